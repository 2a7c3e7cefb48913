//! The `bootstrap` binary of the Lambda custom runtime (provided.al2023). Everything is built
//! once, before the first invocation; see the library for what an invocation does.
//!
//! Logs follow the function's logging configuration (`AWS_LAMBDA_LOG_FORMAT`,
//! `AWS_LAMBDA_LOG_LEVEL`), or `QBILL_LOG` where it is set: see [`qbill_lambda::logging`].
//!
//! The engine's metrics go out as CloudWatch embedded metric format: one JSON document per label
//! set on standard output after each invocation, in the namespace `QBILL_METRICS_NAMESPACE`
//! (default `qbill`) with the dimension `function`; CloudWatch Logs turns them into metrics.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use lambda_runtime::{Error, LambdaEvent, service_fn};
use qbill_lambda::logging::Logging;
use qbill_lambda::{Function, FunctionSettings};
use serde_json::Value;

/// The invocation's deadline (Unix milliseconds) as an instant of this process.
fn deadline(unix_ms: u64) -> Instant {
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default();
    Instant::now() + Duration::from_millis(unix_ms.saturating_sub(now_ms))
}

/// mimalloc: the worker allocates and frees a reply's worth of small buffers per message, and
/// spends less time in the allocator with it than with the system's (docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> Result<(), Error> {
    Logging::from_env().init();
    let settings = FunctionSettings::from_env().map_err(|e| format!("{e:#}"))?;
    let metrics = metrics_cloudwatch_embedded::Builder::new()
        .cloudwatch_namespace(settings.metrics_namespace)
        .with_dimension("function", settings.function)
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
