//! The function's logs, as its logging configuration asks: Lambda passes the configuration's
//! `log_format` as `AWS_LAMBDA_LOG_FORMAT` (`JSON` or `Text`) and its `application_log_level` as
//! `AWS_LAMBDA_LOG_LEVEL` (`TRACE`, `DEBUG`, `INFO`, `WARN`, `ERROR` or `FATAL`).
//!
//! - **Level.** `QBILL_LOG`, when set, wins: it is a whole filter (`info,qbill_core=debug`), set
//!   by hand on one function to look closer at one crate, where Lambda's level is one word for
//!   all of them. Otherwise Lambda's level (`FATAL`, which tracing lacks, is `ERROR`), else
//!   `info`. In JSON, Lambda drops lines above its level whatever the process writes, so
//!   `QBILL_LOG` can quieten a function but not make it louder than its `application_log_level`.
//! - **Held crates.** The crates of [`CRATES_HELD_AT_INFO`] log request contents at debug: they
//!   stay at `info` at most, whatever either setting asks.
//! - **Format.** JSON lines unless Lambda says `Text`. A JSON line carries its `level` and an
//!   RFC 3339 `timestamp`: Lambda needs both to filter by level (a line without a valid timestamp
//!   counts as INFO). A text line has no time of its own, since CloudWatch stamps every line.
//!
//! A value neither setting knows is not fatal (a log level is no reason to refuse work): the
//! default is used and a warning says so once the logs are up.

use qbill_core::config::CRATES_HELD_AT_INFO;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::LevelFilter;

/// How each line is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Text,
}

/// What the environment asks of the logs, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Logging {
    /// The filter, in `EnvFilter`'s syntax.
    pub directives: String,
    pub format: Format,
    /// Settings not understood, each with what was used instead.
    pub ignored: Vec<String>,
}

impl Logging {
    /// From `QBILL_LOG`, `AWS_LAMBDA_LOG_LEVEL` and `AWS_LAMBDA_LOG_FORMAT`.
    pub fn from_env() -> Self {
        let var = |name| std::env::var(name).ok();
        Self::parse(
            var("QBILL_LOG").as_deref(),
            var("AWS_LAMBDA_LOG_LEVEL").as_deref(),
            var("AWS_LAMBDA_LOG_FORMAT").as_deref(),
        )
    }

    pub fn parse(
        qbill_log: Option<&str>,
        lambda_level: Option<&str>,
        lambda_format: Option<&str>,
    ) -> Self {
        let mut ignored = Vec::new();

        let lambda_level = set(lambda_level).and_then(|name| {
            let level = level(name);
            if level.is_none() {
                ignored.push(format!(
                    "AWS_LAMBDA_LOG_LEVEL={name:?} is not a level; using INFO"
                ));
            }
            level
        });
        let own_filter = set(qbill_log).filter(|filter| {
            let valid = EnvFilter::try_new(filter).is_ok();
            if !valid {
                ignored.push(format!(
                    "QBILL_LOG={filter:?} is not a filter; using AWS_LAMBDA_LOG_LEVEL or INFO"
                ));
            }
            valid
        });
        let directives = match own_filter {
            Some(filter) => held_at_most(filter, LevelFilter::INFO),
            None => {
                let level = lambda_level.unwrap_or(LevelFilter::INFO);
                held_at_most(&level.to_string(), level.min(LevelFilter::INFO))
            }
        };

        let format = match set(lambda_format) {
            None => Format::Json,
            Some(name) if name.eq_ignore_ascii_case("json") => Format::Json,
            Some(name) if name.eq_ignore_ascii_case("text") => Format::Text,
            Some(name) => {
                ignored.push(format!(
                    "AWS_LAMBDA_LOG_FORMAT={name:?} is neither JSON nor Text; using JSON"
                ));
                Format::Json
            }
        };
        Self {
            directives,
            format,
            ignored,
        }
    }

    /// Installs the process's subscriber, then warns of what was ignored.
    pub fn init(self) {
        let filter = EnvFilter::try_new(&self.directives).unwrap_or_else(|_| "info".into());
        let builder = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_ansi(false);
        match self.format {
            Format::Json => builder.json().init(),
            Format::Text => builder.without_time().init(),
        }
        for ignored in &self.ignored {
            tracing::warn!("{ignored}");
        }
    }
}

/// A setting with something in it.
fn set(value: Option<&str>) -> Option<&str> {
    value.map(str::trim).filter(|v| !v.is_empty())
}

/// Lambda's application log level as tracing's: `FATAL`, which tracing lacks, is `ERROR`.
pub fn level(name: &str) -> Option<LevelFilter> {
    match name.trim().to_ascii_uppercase().as_str() {
        "TRACE" => Some(LevelFilter::TRACE),
        "DEBUG" => Some(LevelFilter::DEBUG),
        "INFO" => Some(LevelFilter::INFO),
        "WARN" => Some(LevelFilter::WARN),
        "ERROR" | "FATAL" => Some(LevelFilter::ERROR),
        _ => None,
    }
}

/// `filter` with the crates that log request contents held at `cap`.
fn held_at_most(filter: &str, cap: LevelFilter) -> String {
    let mut directives = filter.to_owned();
    for noisy in CRATES_HELD_AT_INFO {
        directives.push_str(&format!(",{noisy}={cap}"));
    }
    directives
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held(cap: &str) -> String {
        CRATES_HELD_AT_INFO
            .iter()
            .map(|noisy| format!(",{noisy}={cap}"))
            .collect()
    }

    #[test]
    fn lambdas_log_levels_map_to_tracings_and_fatal_is_error() {
        let cases = [
            ("TRACE", LevelFilter::TRACE),
            ("DEBUG", LevelFilter::DEBUG),
            ("INFO", LevelFilter::INFO),
            ("WARN", LevelFilter::WARN),
            ("ERROR", LevelFilter::ERROR),
            ("FATAL", LevelFilter::ERROR),
            ("debug", LevelFilter::DEBUG),
        ];
        for (name, want) in cases {
            assert_eq!(level(name), Some(want), "{name}");
        }
        assert_eq!(level("LOUD"), None);
        assert_eq!(level("WARNING"), None);
    }

    #[test]
    fn lambdas_level_sets_the_filter_and_never_opens_the_held_crates_past_info() {
        let debug = Logging::parse(None, Some("DEBUG"), Some("JSON"));
        assert_eq!(debug.directives, format!("debug{}", held("info")));
        assert_eq!(debug.format, Format::Json);
        assert!(debug.ignored.is_empty());

        let trace = Logging::parse(None, Some("TRACE"), Some("JSON"));
        assert_eq!(trace.directives, format!("trace{}", held("info")));

        // Quieter than info: the held crates are as quiet as the rest.
        let warn = Logging::parse(None, Some("WARN"), Some("Text"));
        assert_eq!(warn.directives, format!("warn{}", held("warn")));
        assert_eq!(warn.format, Format::Text);

        let fatal = Logging::parse(None, Some("FATAL"), None);
        assert_eq!(fatal.directives, format!("error{}", held("error")));

        for logging in [debug, trace, warn, fatal] {
            assert!(EnvFilter::try_new(&logging.directives).is_ok());
        }
    }

    #[test]
    fn qbill_log_wins_over_lambdas_level_with_the_held_crates_still_at_info() {
        let logging = Logging::parse(Some("info,qbill_core=debug"), Some("ERROR"), Some("JSON"));
        assert_eq!(
            logging.directives,
            format!("info,qbill_core=debug{}", held("info"))
        );
        assert!(logging.ignored.is_empty());
    }

    #[test]
    fn with_nothing_set_it_is_info_in_json_lines() {
        let logging = Logging::parse(None, None, None);
        assert_eq!(logging.directives, format!("info{}", held("info")));
        assert_eq!(logging.format, Format::Json);
        assert!(logging.ignored.is_empty());
        assert_eq!(Logging::parse(Some(" "), Some(""), Some("")), logging);
    }

    #[test]
    fn settings_not_understood_fall_back_to_the_defaults_and_say_so() {
        let logging = Logging::parse(None, Some("LOUD"), Some("yaml"));
        assert_eq!(logging.directives, format!("info{}", held("info")));
        assert_eq!(logging.format, Format::Json);
        assert_eq!(logging.ignored.len(), 2, "{:?}", logging.ignored);

        // A filter that does not parse gives way to Lambda's level.
        let logging = Logging::parse(Some("qbill_core=loud"), Some("WARN"), Some("text"));
        assert_eq!(logging.directives, format!("warn{}", held("warn")));
        assert_eq!(logging.format, Format::Text);
        assert_eq!(logging.ignored.len(), 1, "{:?}", logging.ignored);
    }
}
