//! The `bootstrap` binary of the Lambda custom runtime (provided.al2023). Everything is built
//! once, before the first invocation; see the library for what an invocation does.

use std::sync::Arc;

use lambda_runtime::{Error, LambdaEvent, service_fn};
use qbill_lambda::Worker;
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

#[tokio::main]
async fn main() -> Result<(), Error> {
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter())
        .without_time() // CloudWatch stamps every line
        .init();
    let worker = Arc::new(Worker::from_env().await.map_err(|e| format!("{e:#}"))?);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| {
        let worker = worker.clone();
        async move {
            worker
                .handle(event.payload)
                .await
                .map_err(|e| Error::from(format!("{e:#}")))
        }
    }))
    .await
}
