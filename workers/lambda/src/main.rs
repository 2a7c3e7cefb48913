//! The `bootstrap` binary of the Lambda custom runtime (provided.al2023). Everything is built
//! once, before the first invocation; see the library for what an invocation does.
//!
//! The engine's metrics go out as CloudWatch embedded metric format: one JSON document per label
//! set on standard output after each invocation, in the namespace `QBILL_METRICS_NAMESPACE`
//! (default `qbill`) with the dimension `function`; CloudWatch Logs turns them into metrics.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use lambda_runtime::{Error, LambdaEvent, service_fn};
use qbill_lambda::Function;
use serde_json::Value;

/// `QBILL_LOG` (default `info`), with the crates that log request contents held at `info`.
fn filter() -> tracing_subscriber::EnvFilter {
    let mut filter =
        tracing_subscriber::EnvFilter::try_from_env("QBILL_LOG").unwrap_or_else(|_| "info".into());
    for noisy in qbill_core::config::CRATES_HELD_AT_INFO {
        filter = filter.add_directive(format!("{noisy}=info").parse().expect("a valid directive"));
    }
    filter
}

/// The invocation's deadline (Unix milliseconds) as an instant of this process.
fn deadline(unix_ms: u64) -> Instant {
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default();
    Instant::now() + Duration::from_millis(unix_ms.saturating_sub(now_ms))
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter())
        .without_time() // CloudWatch stamps every line
        .init();
    let name = Function::name_from_env().map_err(|e| format!("{e:#}"))?;
    let metrics = metrics_cloudwatch_embedded::Builder::new()
        .cloudwatch_namespace(
            qbill_core::config::env_or("QBILL_METRICS_NAMESPACE", "qbill".to_owned())
                .map_err(|e| format!("{e:#}"))?,
        )
        .with_dimension("function", name)
        .init()
        .map_err(|e| format!("the metrics recorder: {e}"))?;
    qbill_core::metrics::describe();
    let function = Arc::new(Function::from_env().await.map_err(|e| format!("{e:#}"))?);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| {
        let function = function.clone();
        async move {
            let handled = function
                .handle(event.payload, deadline(event.context.deadline))
                .await
                .map_err(|e| Error::from(format!("{e:#}")));
            if let Err(e) = metrics.flush(std::io::stdout().lock()) {
                tracing::warn!(error = %e, "the metrics could not be written");
            }
            handled
        }
    }))
    .await
}
