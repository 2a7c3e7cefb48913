//! `qbill status`: what an operator scales workers by, in one screen. The queues are asked
//! directly (SQS's attributes and a count of the reply queues); the workers' own figures come
//! from their metrics endpoints (`qbill work --metrics-addr`), scraped twice to get rates.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::QueueAttributeName;

/// One scrape of the Prometheus text of one or more workers: each series' value, summed over
/// the workers (a gauge such as the oldest age is kept at its largest instead).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Scrape {
    series: BTreeMap<String, f64>,
    gauges_max: BTreeMap<String, f64>,
}

impl Scrape {
    /// Adds one worker's exposition text: `name{labels} value` lines, `#` lines skipped.
    pub fn add(&mut self, text: &str) {
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((series, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let Ok(value) = value.parse::<f64>() else {
                continue;
            };
            *self.series.entry(series.to_owned()).or_default() += value;
            let max = self.gauges_max.entry(series.to_owned()).or_insert(value);
            *max = max.max(value);
        }
    }

    /// The sum of every series of metric `name` whose labels include all of `labels`
    /// (`key="value"` pairs).
    pub fn sum(&self, name: &str, labels: &[&str]) -> f64 {
        self.series
            .iter()
            .filter(|(series, _)| matches(series, name, labels))
            .map(|(_, value)| value)
            .sum()
    }

    /// The largest value any worker reported for `name`, if one did.
    pub fn max(&self, name: &str) -> Option<f64> {
        self.gauges_max
            .iter()
            .filter(|(series, _)| matches(series, name, &[]))
            .map(|(_, value)| *value)
            .reduce(f64::max)
    }
}

fn matches(series: &str, name: &str, labels: &[&str]) -> bool {
    let (series_name, series_labels) = match series.split_once('{') {
        Some((n, rest)) => (n, rest.trim_end_matches('}')),
        None => (series, ""),
    };
    series_name == name
        && labels
            .iter()
            .all(|label| series_labels.split(',').any(|l| l == *label))
}

/// The queues' side.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct Queues {
    pub waiting: u64,
    pub in_flight: u64,
    pub delayed: u64,
    pub dead_letters: u64,
    pub reply_queues: u64,
}

pub async fn queues(
    client: &Client,
    request_url: &str,
    dead_letter_url: &str,
    reply_prefix: &str,
) -> anyhow::Result<Queues> {
    let attributes = |url: &str| {
        client
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesDelayed)
            .send()
    };
    let (request, dead) = tokio::try_join!(attributes(request_url), attributes(dead_letter_url))?;
    let number = |out: &aws_sdk_sqs::operation::get_queue_attributes::GetQueueAttributesOutput,
                  name: QueueAttributeName| {
        out.attributes()
            .and_then(|a| a.get(&name))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    let mut reply_queues = 0;
    let mut next = None;
    loop {
        let page = client
            .list_queues()
            .queue_name_prefix(reply_prefix)
            .max_results(1000)
            .set_next_token(next)
            .send()
            .await?;
        reply_queues += page.queue_urls().len() as u64;
        next = page.next_token;
        if next.is_none() {
            break;
        }
    }
    Ok(Queues {
        waiting: number(&request, QueueAttributeName::ApproximateNumberOfMessages),
        in_flight: number(
            &request,
            QueueAttributeName::ApproximateNumberOfMessagesNotVisible,
        ),
        delayed: number(
            &request,
            QueueAttributeName::ApproximateNumberOfMessagesDelayed,
        ),
        dead_letters: number(&dead, QueueAttributeName::ApproximateNumberOfMessages),
        reply_queues,
    })
}

/// Scrapes every endpoint once; an endpoint that does not answer is named in the errors.
pub async fn scrape(http: &reqwest::Client, endpoints: &[String]) -> (Scrape, Vec<String>) {
    let mut scrape = Scrape::default();
    let mut errors = Vec::new();
    for endpoint in endpoints {
        let answer = async {
            http.get(endpoint)
                .timeout(Duration::from_secs(2))
                .send()
                .await?
                .error_for_status()?
                .text()
                .await
        };
        match answer.await {
            Ok(text) => scrape.add(&text),
            Err(e) => errors.push(format!("{endpoint}: {e}")),
        }
    }
    (scrape, errors)
}

/// The workers' figures between two scrapes `elapsed` apart.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Throughput {
    pub replies_per_second: f64,
    pub errors_per_second: f64,
    pub retries_per_second: f64,
    pub dead_letters: f64,
    pub oldest_received_age_seconds: Option<f64>,
}

pub fn throughput(before: &Scrape, after: &Scrape, elapsed: Duration) -> Throughput {
    use qbill_core::metrics::{DEAD_LETTERS, MESSAGES, OLDEST_RECEIVED_AGE_SECONDS, REPLIES};
    let seconds = elapsed.as_secs_f64().max(0.001);
    let rate = |name: &str, labels: &[&str]| {
        ((after.sum(name, labels) - before.sum(name, labels)) / seconds).max(0.0)
    };
    Throughput {
        replies_per_second: rate(REPLIES, &[]),
        errors_per_second: rate(REPLIES, &["outcome=\"error\""]),
        retries_per_second: rate(MESSAGES, &["disposition=\"retry\""]),
        dead_letters: after.sum(DEAD_LETTERS, &[]),
        oldest_received_age_seconds: after.max(OLDEST_RECEIVED_AGE_SECONDS),
    }
}

/// What `status` saw: the queues now and, with metrics endpoints, the workers' rates.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Snapshot {
    pub at: chrono::DateTime<chrono::Utc>,
    pub request_queue: String,
    pub queues: Queues,
    /// `None` without metrics endpoints.
    pub workers: Option<Throughput>,
    pub endpoints: usize,
    /// The endpoints that did not answer, each with its error.
    pub not_answering: Vec<String>,
    pub sampled_seconds: f64,
}

/// The limits `status --check` holds the snapshot to.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// The oldest request a worker has received may be at most this old.
    pub max_age: Duration,
}

/// One check of `status --check`: what was checked and, when it failed, why.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Check {
    pub name: &'static str,
    pub ok: bool,
    pub detail: String,
}

impl Snapshot {
    /// Each check, passed or not: the dead-letter queue is empty, every metrics endpoint
    /// answers, and the oldest request the workers hold is younger than the limit (checked only
    /// when some endpoint answered: the queues alone do not tell a message's age).
    pub fn checks(&self, limits: Limits) -> Vec<Check> {
        let mut checks = vec![Check {
            name: "dead_letters",
            ok: self.queues.dead_letters == 0,
            detail: format!(
                "{} message(s) in the dead-letter queue",
                self.queues.dead_letters
            ),
        }];
        if self.endpoints > 0 {
            checks.push(Check {
                name: "metrics",
                ok: self.not_answering.is_empty(),
                detail: if self.not_answering.is_empty() {
                    format!("{} metrics endpoint(s) answered", self.endpoints)
                } else {
                    format!("not answering: {}", self.not_answering.join("; "))
                },
            });
        }
        let age = self.workers.and_then(|w| w.oldest_received_age_seconds);
        checks.push(Check {
            name: "oldest_request",
            ok: age.is_none_or(|age| age <= limits.max_age.as_secs_f64()),
            detail: match age {
                Some(age) => format!(
                    "oldest request {age:.1} s old (limit {} s)",
                    limits.max_age.as_secs()
                ),
                None => "not known without an answering metrics endpoint".to_owned(),
            },
        });
        checks
    }

    /// The screen.
    pub fn render(&self) -> String {
        render(
            &self.request_queue,
            &self.queues,
            self.workers.as_ref(),
            self.endpoints,
            &self.not_answering,
            Duration::from_secs_f64(self.sampled_seconds),
        )
    }
}

/// The screen.
pub fn render(
    request_queue: &str,
    queues: &Queues,
    workers: Option<&Throughput>,
    endpoints: usize,
    errors: &[String],
    sampled: Duration,
) -> String {
    let mut out = String::new();
    let now = chrono::Utc::now().format("%Y-%m-%d %H:%M:%S UTC");
    let _ = writeln!(out, "qbill status, {now}");
    let _ = writeln!(out);
    let _ = writeln!(out, "request queue {request_queue}");
    let _ = writeln!(out, "  waiting            {:>10}", queues.waiting);
    let _ = writeln!(out, "  in flight          {:>10}", queues.in_flight);
    let _ = writeln!(out, "  delayed            {:>10}", queues.delayed);
    let age = match workers.and_then(|w| w.oldest_received_age_seconds) {
        Some(age) => format!("{age:>10.1} s   (oldest message of the workers' last receive)"),
        None => format!(
            "{:>10}     (from the workers' metrics: give --metrics; on AWS see the dashboard)",
            "-"
        ),
    };
    let _ = writeln!(out, "  oldest age         {age}");
    let _ = writeln!(out, "dead-letter queue    {:>10}", queues.dead_letters);
    let _ = writeln!(out, "reply queues alive   {:>10}", queues.reply_queues);
    let _ = writeln!(out);
    match workers {
        Some(w) => {
            let _ = writeln!(
                out,
                "workers ({endpoints} metrics endpoint(s), over {:.1} s)",
                sampled.as_secs_f64()
            );
            let _ = writeln!(out, "  replies/s          {:>10.1}", w.replies_per_second);
            let _ = writeln!(out, "  error replies/s    {:>10.1}", w.errors_per_second);
            let _ = writeln!(out, "  retries/s          {:>10.1}", w.retries_per_second);
            let _ = writeln!(out, "  dead-lettered      {:>10}", w.dead_letters as u64);
        }
        None => {
            let _ = writeln!(
                out,
                "workers: no metrics endpoint given (--metrics http://HOST:PORT/metrics, repeatable)"
            );
        }
    }
    for error in errors {
        let _ = writeln!(out, "  not answering: {error}");
    }
    out
}

/// Samples for `interval` and returns the screen; with `previous`, measures since then instead.
pub struct Sampler {
    pub client: Client,
    pub http: reqwest::Client,
    pub request_queue: String,
    pub request_url: String,
    pub dead_letter_url: String,
    pub reply_prefix: String,
    pub endpoints: Vec<String>,
    last: Option<(Instant, Scrape)>,
}

impl Sampler {
    pub fn new(
        client: Client,
        request_queue: String,
        request_url: String,
        dead_letter_url: String,
        reply_prefix: String,
        endpoints: Vec<String>,
    ) -> Self {
        Self {
            client,
            http: reqwest::Client::new(),
            request_queue,
            request_url,
            dead_letter_url,
            reply_prefix,
            endpoints,
            last: None,
        }
    }

    /// One screen: the queues now, and the workers' rates since the last screen (or over
    /// `interval`, the first time).
    pub async fn screen(&mut self, interval: Duration) -> anyhow::Result<String> {
        Ok(self.sample(interval).await?.render())
    }

    /// The queues now, and the workers' rates since the last sample (or over `interval`, the
    /// first time).
    pub async fn sample(&mut self, interval: Duration) -> anyhow::Result<Snapshot> {
        let mut errors = Vec::new();
        let mut workers = None;
        let mut sampled = interval;
        if !self.endpoints.is_empty() {
            let (before_at, before) = match self.last.take() {
                Some(last) => last,
                None => {
                    let (scrape, _) = scrape(&self.http, &self.endpoints).await;
                    let at = Instant::now();
                    tokio::time::sleep(interval).await;
                    (at, scrape)
                }
            };
            let (after, failed) = scrape(&self.http, &self.endpoints).await;
            let now = Instant::now();
            sampled = now - before_at;
            workers = Some(throughput(&before, &after, sampled));
            errors = failed;
            self.last = Some((now, after));
        }
        let queues = queues(
            &self.client,
            &self.request_url,
            &self.dead_letter_url,
            &self.reply_prefix,
        )
        .await?;
        Ok(Snapshot {
            at: chrono::Utc::now(),
            request_queue: self.request_queue.clone(),
            queues,
            workers,
            endpoints: self.endpoints.len(),
            not_answering: errors,
            sampled_seconds: sampled.as_secs_f64(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WORKER_A: &str = "# TYPE qbill_replies_total counter\n\
        qbill_replies_total{kind=\"auth\",outcome=\"ok\"} 10\n\
        qbill_replies_total{kind=\"utils\",outcome=\"error\"} 2\n\
        qbill_messages_total{disposition=\"retry\"} 1\n\
        qbill_oldest_received_age_seconds 0.5\n";
    const WORKER_B: &str = "qbill_replies_total{kind=\"auth\",outcome=\"ok\"} 5\n\
        qbill_oldest_received_age_seconds 3\n";

    #[test]
    fn sums_series_over_workers_and_labels() {
        let mut scrape = Scrape::default();
        scrape.add(WORKER_A);
        scrape.add(WORKER_B);
        assert_eq!(scrape.sum("qbill_replies_total", &[]), 17.0);
        assert_eq!(
            scrape.sum("qbill_replies_total", &["outcome=\"error\""]),
            2.0
        );
        assert_eq!(scrape.sum("qbill_replies", &[]), 0.0, "names match whole");
        assert_eq!(scrape.max("qbill_oldest_received_age_seconds"), Some(3.0));
    }

    #[test]
    fn rates_are_the_difference_over_the_time_between() {
        let mut before = Scrape::default();
        before.add(WORKER_A);
        let mut after = Scrape::default();
        after.add(&WORKER_A.replace("} 10\n", "} 30\n"));
        let rates = throughput(&before, &after, Duration::from_secs(2));
        assert_eq!(rates.replies_per_second, 10.0);
        assert_eq!(rates.errors_per_second, 0.0);
        assert_eq!(rates.oldest_received_age_seconds, Some(0.5));
    }

    #[test]
    fn the_screen_shows_counts_as_whole_numbers() {
        let empty = Scrape::default();
        let rates = throughput(&empty, &empty, Duration::from_secs(1));
        let screen = render(
            "q",
            &Queues::default(),
            Some(&rates),
            1,
            &[],
            Duration::from_secs(1),
        );
        let line = screen
            .lines()
            .find(|l| l.contains("dead-lettered"))
            .unwrap();
        assert_eq!(line.split_whitespace().last(), Some("0"), "{screen}");
    }
}
