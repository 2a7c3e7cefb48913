//! A stand-in for the Lambda Runtime API, so that the real `bootstrap` binary runs on this machine
//! as in a Lambda execution environment: it initialises once, then takes one invocation after
//! another from `GET /2018-06-01/runtime/invocation/next` and posts each result back to
//! `…/invocation/{id}/response` or `…/{id}/error` (or, if its init fails, to `…/init/error`).
//!
//! The one copy, used by the Lambda tests (`tests/lambda`), the memory benchmark
//! (`qbill-loadtest memory`) and `qbill-loadtest lambda-duration`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::Value;
use tokio::process::{Child, Command};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// How long an invocation may run, as its deadline header tells the function.
const INVOCATION_TIMEOUT: Duration = Duration::from_secs(60);
const FUNCTION_ARN: &str = "arn:aws:lambda:us-east-1:000000000000:function:qbill-worker";

/// One invocation, as the function answered it.
#[derive(Debug)]
pub struct Invocation {
    /// What the function posted to `…/response` (`Ok`) or to `…/error` (`Err`); a body that is not
    /// JSON is kept as a JSON string.
    pub result: Result<Value, Value>,
    /// From the function taking the event to its posting the result.
    pub duration: Duration,
}

/// The `bootstrap` process and the Runtime API it talks to. Killed when dropped.
pub struct Function {
    child: Child,
    events: mpsc::UnboundedSender<(String, Value)>,
    posted: mpsc::UnboundedReceiver<Posted>,
    server: JoinHandle<()>,
    invocations: u64,
}

/// What the function posted.
enum Posted {
    Result {
        id: String,
        result: Result<Value, Value>,
        duration: Duration,
    },
    InitError(String),
}

#[derive(Clone)]
struct Api {
    /// The events to hand out, one per `next`; a `next` waits for one as on Lambda.
    events: Arc<tokio::sync::Mutex<mpsc::UnboundedReceiver<(String, Value)>>>,
    /// When each invocation was handed out.
    taken: Arc<Mutex<HashMap<String, Instant>>>,
    posted: mpsc::UnboundedSender<Posted>,
}

impl Function {
    /// Starts `bootstrap` against a Runtime API of its own, telling it that it has `memory_mb`.
    /// The rest of its environment and where its output goes are the caller's, set on the command.
    pub async fn start(mut bootstrap: Command, memory_mb: u32) -> anyhow::Result<Self> {
        let (events, pending) = mpsc::unbounded_channel();
        let (to_caller, posted) = mpsc::unbounded_channel();
        let api = Api {
            events: Arc::new(tokio::sync::Mutex::new(pending)),
            taken: Arc::default(),
            posted: to_caller,
        };
        let app = Router::new()
            .route("/2018-06-01/runtime/invocation/next", get(next))
            .route("/2018-06-01/runtime/invocation/{id}/{kind}", post(result))
            .route("/2018-06-01/runtime/init/error", post(init_error))
            .with_state(api);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding the Runtime API stand-in")?;
        let address: SocketAddr = listener.local_addr()?;
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        let child = bootstrap
            .env("AWS_LAMBDA_RUNTIME_API", address.to_string())
            .env("AWS_LAMBDA_FUNCTION_NAME", "qbill-worker")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", memory_mb.to_string())
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {:?}", bootstrap.as_std().get_program()))?;
        Ok(Self {
            child,
            events,
            posted,
            server,
            invocations: 0,
        })
    }

    /// Its process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// The process, to read its output or ask whether it still runs.
    pub fn process(&mut self) -> &mut Child {
        &mut self.child
    }

    /// Hands the function `event` and waits up to `patience` for its result. Fails if the
    /// function failed to initialise, exited, or did not answer in time.
    pub async fn invoke(&mut self, event: Value, patience: Duration) -> anyhow::Result<Invocation> {
        self.invocations += 1;
        let id = format!("invocation-{}", self.invocations);
        self.events
            .send((id.clone(), event))
            .ok()
            .context("the Runtime API stand-in stopped")?;
        let deadline = tokio::time::Instant::now() + patience;
        loop {
            let posted = tokio::select! {
                posted = self.posted.recv() => posted.context("the Runtime API stand-in stopped")?,
                exited = self.child.wait() => bail!("the function exited ({}) during {id}", exited?),
                () = tokio::time::sleep_until(deadline) => {
                    bail!("the function did not answer {id} in {patience:?}")
                }
            };
            match posted {
                Posted::Result {
                    id: answered,
                    result,
                    duration,
                } if answered == id => return Ok(Invocation { result, duration }),
                // A late answer to an invocation given up on.
                Posted::Result { .. } => {}
                Posted::InitError(body) => bail!("the function failed to initialise: {body}"),
            }
        }
    }

    /// Kills the function and stops its Runtime API.
    pub async fn kill(mut self) -> anyhow::Result<()> {
        self.server.abort();
        self.child.kill().await.context("killing the function")
    }
}

impl Drop for Function {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn next(State(api): State<Api>) -> Response {
    let Some((id, event)) = api.events.lock().await.recv().await else {
        return StatusCode::GONE.into_response();
    };
    api.taken
        .lock()
        .expect("taken")
        .insert(id.clone(), Instant::now());
    let deadline = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .saturating_add(INVOCATION_TIMEOUT)
        .as_millis();
    let mut headers = HeaderMap::new();
    for (name, value) in [
        ("lambda-runtime-aws-request-id", id),
        ("lambda-runtime-deadline-ms", deadline.to_string()),
        (
            "lambda-runtime-invoked-function-arn",
            FUNCTION_ARN.to_owned(),
        ),
    ] {
        if let Ok(value) = value.parse() {
            headers.insert(name, value);
        }
    }
    (headers, axum::Json(event)).into_response()
}

async fn result(
    State(api): State<Api>,
    Path((id, kind)): Path<(String, String)>,
    body: String,
) -> StatusCode {
    let answered = Instant::now();
    let taken = api.taken.lock().expect("taken").remove(&id);
    let value = serde_json::from_str(&body).unwrap_or(Value::String(body));
    let result = match kind.as_str() {
        "response" => Ok(value),
        "error" => Err(value),
        _ => return StatusCode::NOT_FOUND,
    };
    let _ = api.posted.send(Posted::Result {
        id,
        result,
        duration: taken.map_or(Duration::ZERO, |t| answered.duration_since(t)),
    });
    StatusCode::ACCEPTED
}

async fn init_error(State(api): State<Api>, body: String) -> StatusCode {
    let _ = api.posted.send(Posted::InitError(body));
    StatusCode::ACCEPTED
}
