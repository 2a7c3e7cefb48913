//! `qbill config`: every setting of `qbill work` (each has its environment variable) with the value it takes and where that value
//! came from (a flag, the environment, the default), secrets shown only as set or unset.

use clap::parser::ValueSource;
use std::fmt::Write as _;

/// One setting as it stands.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Setting {
    pub heading: String,
    /// The environment variable.
    pub name: String,
    /// `None` when unset; `"(hidden)"` for a secret that is set.
    pub value: Option<String>,
    /// `flag`, `environment`, `default` or `unset`.
    pub source: &'static str,
    pub secret: bool,
}

/// The settings of `command` (the subcommand's definition) as `matches` (its parse) holds them,
/// in the order of its help.
pub fn effective(command: &clap::Command, matches: &clap::ArgMatches) -> Vec<Setting> {
    command
        .get_arguments()
        .filter(|arg| arg.get_env().is_some())
        .map(|arg| {
            let id = arg.get_id().as_str();
            let name = arg
                .get_env()
                .map(|env| env.to_string_lossy().into_owned())
                .unwrap_or_default();
            let source = match matches.value_source(id) {
                Some(ValueSource::CommandLine) => "flag",
                Some(ValueSource::EnvVariable) => "environment",
                Some(ValueSource::DefaultValue) => "default",
                _ => "unset",
            };
            let secret = arg.is_hide_env_values_set();
            let raw = matches.get_raw(id).map(|values| {
                values
                    .map(|v| v.to_string_lossy().into_owned())
                    .collect::<Vec<_>>()
                    .join(",")
            });
            let value = match raw {
                Some(value) if value.trim().is_empty() => None,
                Some(_) if secret => Some("(hidden)".to_owned()),
                other => other,
            };
            Setting {
                heading: arg
                    .get_help_heading()
                    .unwrap_or("Workers and logging")
                    .to_owned(),
                name,
                value,
                source,
                secret,
            }
        })
        .collect()
}

/// The settings as aligned text, a block per heading.
pub fn render(settings: &[Setting]) -> String {
    let width = settings.iter().map(|s| s.name.len()).max().unwrap_or(0);
    let mut out = String::new();
    let mut heading = None;
    for setting in settings {
        if heading != Some(&setting.heading) {
            if heading.is_some() {
                out.push('\n');
            }
            let _ = writeln!(out, "# {}", setting.heading);
            heading = Some(&setting.heading);
        }
        let value = setting.value.as_deref().unwrap_or("-");
        let _ = writeln!(
            out,
            "{:width$}  {value}  ({})",
            setting.name, setting.source
        );
    }
    out
}
