//! The Terraform stack cross-checked against the code, without AWS or a Terraform binary: every
//! `.tf` file is parsed with an HCL parser, and what the stack deploys is compared with what the
//! gateway definition and the workers expect.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use hcl::eval::{Context, Evaluate};
use hcl::{Block, Body, Expression};

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

struct Stack {
    bodies: Vec<(String, Body)>,
}

impl Stack {
    fn load() -> Self {
        let mut bodies = Vec::new();
        for entry in
            std::fs::read_dir(Path::new(ROOT).join("terraform")).expect("terraform/ exists")
        {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "tf") {
                let text = std::fs::read_to_string(&path).unwrap();
                let body = hcl::parse(&text)
                    .unwrap_or_else(|e| panic!("{} does not parse: {e}", path.display()));
                bodies.push((
                    path.file_name().unwrap().to_string_lossy().into_owned(),
                    body,
                ));
            }
        }
        assert!(bodies.len() > 5, "the stack has its files");
        Self { bodies }
    }

    fn blocks<'a>(&'a self, kind: &'a str) -> impl Iterator<Item = &'a Block> + 'a {
        self.bodies
            .iter()
            .flat_map(move |(_, b)| b.blocks().filter(move |block| block.identifier() == kind))
    }

    /// `resource "TYPE" "NAME"` (or another kind of block with two labels).
    fn block<'a>(&'a self, kind: &'a str, labels: &[&str]) -> &'a Block {
        self.blocks(kind)
            .find(|b| {
                b.labels()
                    .iter()
                    .map(|l| l.as_str())
                    .eq(labels.iter().copied())
            })
            .unwrap_or_else(|| panic!("no {kind} {labels:?} in terraform/"))
    }

    fn local(&self, name: &str) -> &Expression {
        self.blocks("locals")
            .flat_map(|b| b.body().attributes())
            .find(|a| a.key() == name)
            .map(|a| a.expr())
            .unwrap_or_else(|| panic!("no local.{name}"))
    }

    /// Evaluates an expression that only refers to variables with defaults and to locals that do.
    fn evaluate(&self, expr: &Expression) -> String {
        let mut vars = hcl::Map::new();
        for variable in self.blocks("variable") {
            if let Some(default) = variable.body().attributes().find(|a| a.key() == "default")
                && let Ok(value) = default.expr().evaluate(&Context::new())
            {
                vars.insert(variable.labels()[0].as_str().to_owned(), value);
            }
        }
        let mut ctx = Context::new();
        ctx.declare_var("var", hcl::Value::Object(vars));
        match expr.evaluate(&ctx) {
            Ok(hcl::Value::String(s)) => s,
            other => panic!("{} does not evaluate to a string: {other:?}", text(expr)),
        }
    }
}

fn attr<'a>(block: &'a Block, key: &str) -> &'a Expression {
    block
        .body()
        .attributes()
        .find(|a| a.key() == key)
        .map(|a| a.expr())
        .unwrap_or_else(|| panic!("{} {:?} has no {key}", block.identifier(), block.labels()))
}

fn text(expr: &Expression) -> String {
    hcl::format::to_string(expr).expect("an expression formats")
}

/// The placeholders `${name}` of the gateway template (`$${` is an escape).
fn gateway_placeholders() -> BTreeSet<String> {
    let yaml =
        std::fs::read_to_string(Path::new(ROOT).join("gateway-config/openapi.yaml")).unwrap();
    let mut names = BTreeSet::new();
    let bytes = yaml.as_bytes();
    for (i, _) in yaml.match_indices("${") {
        if i > 0 && bytes[i - 1] == b'$' {
            continue;
        }
        let end = yaml[i..].find('}').unwrap() + i;
        names.insert(yaml[i + 2..end].to_owned());
    }
    names
}

#[test]
fn the_gateway_deploys_the_whole_gateway_config_with_every_placeholder_filled() {
    let stack = Stack::load();
    let api = stack.block("resource", &["aws_api_gateway_rest_api", "qbill"]);
    assert_eq!(text(attr(api, "body")), "local.openapi_body");
    let body = text(stack.local("openapi_body"));
    assert!(
        body.contains("templatefile(\"${path.module}/../gateway-config/openapi.yaml\""),
        "{body}"
    );
    assert!(
        body.starts_with("jsonencode(yamldecode("),
        "anchors must be resolved before API Gateway sees it: {body}"
    );
    let placeholders = gateway_placeholders();
    assert_eq!(
        placeholders,
        [
            "account_id",
            "aws_region",
            "gateway_role_arn",
            "reply_queue_prefix",
            "request_queue_name"
        ]
        .map(String::from)
        .into()
    );
    for name in &placeholders {
        assert!(
            body.contains(&format!("{name} =")) || body.contains(&format!("{name}=")),
            "templatefile() does not pass {name}: {body}"
        );
    }
    assert!(
        body.contains("request_queue_name = aws_sqs_queue.requests.name"),
        "{body}"
    );
    assert!(
        body.contains("reply_queue_prefix = local.reply_queue_prefix"),
        "{body}"
    );
    assert!(
        body.contains("gateway_role_arn = aws_iam_role.gateway.arn"),
        "{body}"
    );
    // A change of the body redeploys the stage.
    let deployment = stack.block("resource", &["aws_api_gateway_deployment", "qbill"]);
    let triggers = deployment
        .body()
        .attributes()
        .find(|a| a.key() == "triggers")
        .expect("triggers");
    assert!(text(triggers.expr()).contains("sha1(local.openapi_body)"));
    let stage = stack.block("resource", &["aws_api_gateway_stage", "qbill"]);
    assert!(text(attr(stage, "deployment_id")).contains("aws_api_gateway_deployment.qbill.id"));
    assert!(
        stage
            .body()
            .blocks()
            .any(|b| b.identifier() == "access_log_settings"),
        "the stage keeps access logs"
    );
}

#[test]
fn queue_names_and_the_reply_prefix_agree_with_the_workers() {
    let stack = Stack::load();
    let defaults = qbill_sqs::SqsConfig {
        request_queue: "qbill-requests".into(),
        reply_queue_prefix: "qbill-reply-".into(),
        reply_retention_seconds: 3600,
        poll_wait_seconds: 10,
        batch_size: 10,
        reply_idle_seconds: 86_400,
        sweep_interval_seconds: 0,
    };
    assert_eq!(
        stack.evaluate(stack.local("reply_queue_prefix")),
        defaults.reply_queue_prefix
    );
    assert_eq!(
        stack.evaluate(stack.local("request_queue_name")),
        defaults.request_queue
    );
    let requests = stack.block("resource", &["aws_sqs_queue", "requests"]);
    assert_eq!(text(attr(requests, "name")), "local.request_queue_name");
    assert!(text(attr(requests, "redrive_policy")).contains("aws_sqs_queue.requests_dlq.arn"));
    // The Lambda and the gateway's IAM scope use the same prefix.
    let worker = stack.block("resource", &["aws_lambda_function", "worker"]);
    assert_eq!(
        lambda_environment(worker)["QBILL_REPLY_QUEUE_PREFIX"],
        "local.reply_queue_prefix"
    );
    assert!(text(stack.local("reply_queue_arn_pattern")).contains("${local.reply_queue_prefix}*"));
}

#[test]
fn the_visibility_timeout_is_at_least_six_lambda_timeouts() {
    let stack = Stack::load();
    let requests = stack.block("resource", &["aws_sqs_queue", "requests"]);
    let visibility = text(attr(requests, "visibility_timeout_seconds"));
    let worker = stack.block("resource", &["aws_lambda_function", "worker"]);
    assert_eq!(text(attr(worker, "timeout")), "var.lambda_timeout_seconds");
    let factor: u32 = visibility
        .strip_suffix(" * var.lambda_timeout_seconds")
        .unwrap_or_else(|| {
            panic!("the visibility timeout must follow the Lambda timeout: {visibility}")
        })
        .trim()
        .parse()
        .unwrap();
    assert!(factor >= 6, "{visibility}");
}

#[test]
fn the_event_source_mapping_reports_batch_item_failures_and_is_tunable() {
    let stack = Stack::load();
    let mapping = stack.block("resource", &["aws_lambda_event_source_mapping", "requests"]);
    let types = attr(mapping, "function_response_types")
        .evaluate(&Context::new())
        .unwrap();
    assert_eq!(types, hcl::Value::from(vec!["ReportBatchItemFailures"]));
    assert_eq!(
        text(attr(mapping, "event_source_arn")),
        "aws_sqs_queue.requests.arn"
    );
    assert!(text(attr(mapping, "function_name")).starts_with("aws_lambda_function.worker."));
    assert_eq!(text(attr(mapping, "batch_size")), "var.lambda_batch_size");
    assert_eq!(
        text(attr(mapping, "maximum_batching_window_in_seconds")),
        "var.lambda_batching_window_seconds"
    );
    let scaling = mapping
        .body()
        .blocks()
        .find(|b| b.identifier() == "scaling_config")
        .expect("scaling_config");
    assert_eq!(
        text(attr(scaling, "maximum_concurrency")),
        "var.worker_max_concurrency"
    );
    let worker = stack.block("resource", &["aws_lambda_function", "worker"]);
    assert_eq!(text(attr(worker, "runtime")), "\"provided.al2023\"");
    assert_eq!(text(attr(worker, "handler")), "\"bootstrap\"");
    assert_eq!(
        text(attr(worker, "reserved_concurrent_executions")),
        "var.worker_reserved_concurrency"
    );
}

fn lambda_environment(worker: &Block) -> BTreeMap<String, String> {
    let environment = worker
        .body()
        .blocks()
        .find(|b| b.identifier() == "environment")
        .expect("an environment block");
    match attr(environment, "variables") {
        Expression::Object(map) => map
            .iter()
            .map(|(key, value)| {
                let key = match key {
                    hcl::ObjectKey::Identifier(id) => id.to_string(),
                    hcl::ObjectKey::Expression(e) => text(e).trim_matches('"').to_owned(),
                    other => panic!("unexpected key {other:?}"),
                };
                (key, text(value))
            })
            .collect(),
        other => panic!(
            "environment.variables is not an object literal: {}",
            text(other)
        ),
    }
}

/// Every environment variable name the Lambda's code can read: string literals naming one in
/// the sources of the crates it runs.
fn variables_read_by_the_lambda() -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for dir in [
        "workers/core/src",
        "workers/core/src/handlers",
        "workers/sqs/src",
        "workers/lambda/src",
    ] {
        for entry in std::fs::read_dir(Path::new(ROOT).join(dir)).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let source = std::fs::read_to_string(&path).unwrap();
            for prefix in ["\"QBILL_", "\"DATABASE_URL\"", "\"REDIS_URL\""] {
                for (i, _) in source.match_indices(prefix) {
                    let end = source[i + 1..].find('"').unwrap() + i + 1;
                    let name = &source[i + 1..end];
                    if name.bytes().all(|b| b.is_ascii_uppercase() || b == b'_') {
                        names.insert(name.to_owned());
                    }
                }
            }
        }
    }
    names
}

/// Read by the code but rightly left to their defaults (or meaningless) on Lambda.
const NOT_SET_ON_LAMBDA: [(&str, &str); 15] = [
    (
        "DATABASE_URL",
        "only for QBILL_DATABASE_AUTH=url, the local mode",
    ),
    (
        "QBILL_JWT_SECRET",
        "a local key; the Lambda reads QBILL_JWT_SECRET_ARN",
    ),
    (
        "QBILL_JWT_PREVIOUS_SECRET",
        "a local key; Secrets Manager's AWSPREVIOUS plays its part",
    ),
    ("QBILL_JWT_ISSUER", "the default is the deployment's issuer"),
    (
        "QBILL_JWT_AUDIENCE",
        "the default is the deployment's audience",
    ),
    ("QBILL_TOKEN_TTL_SECONDS", "the default lifetime"),
    ("QBILL_CACHE_PREFIX", "one deployment per Redis"),
    ("QBILL_CACHE_TTL_SECONDS", "the default cache lifetime"),
    ("QBILL_CACHE_TIMEOUT_MS", "the default cache timeout"),
    (
        "QBILL_REQUEST_QUEUE",
        "the worker pool's; the event source mapping feeds the Lambda",
    ),
    (
        "QBILL_POLL_WAIT_SECONDS",
        "the worker pool's; Lambda does not poll",
    ),
    (
        "QBILL_BATCH_SIZE",
        "the worker pool's; the mapping's batch_size applies",
    ),
    ("QBILL_LOG", "the log filter, info by default"),
    (
        "QBILL_PASSWORD_CHECKS",
        "one per core the runtime shows (two on functions below 3 GB): 2 x 19 MiB",
    ),
    (
        "QBILL_SWEEP_INTERVAL_SECONDS",
        "the worker pool's; on Lambda an EventBridge schedule sweeps",
    ),
];

#[test]
fn every_environment_variable_the_lambda_reads_is_set_or_rightly_defaulted() {
    let stack = Stack::load();
    let worker = stack.block("resource", &["aws_lambda_function", "worker"]);
    let set: BTreeSet<String> = lambda_environment(worker).into_keys().collect();
    let read = variables_read_by_the_lambda();
    assert!(
        read.contains("QBILL_DATABASE_AUTH") && read.contains("QBILL_JWT_SECRET_ARN"),
        "the scan finds the code's variables: {read:?}"
    );
    let defaulted: BTreeSet<String> = NOT_SET_ON_LAMBDA
        .iter()
        .map(|(n, _)| n.to_string())
        .collect();
    let missing: Vec<_> = read
        .iter()
        .filter(|n| !set.contains(*n) && !defaulted.contains(*n))
        .collect();
    assert!(
        missing.is_empty(),
        "read by the Lambda but not set by Terraform: {missing:?}"
    );
    let unread: Vec<_> = set.iter().filter(|n| !read.contains(*n)).collect();
    assert!(
        unread.is_empty(),
        "set by Terraform but read by no code (a typo?): {unread:?}"
    );
    let stale: Vec<_> = defaulted.iter().filter(|n| !read.contains(*n)).collect();
    assert!(
        stale.is_empty(),
        "listed as defaulted but no longer read: {stale:?}"
    );
    assert_eq!(
        lambda_environment(worker)["QBILL_DATABASE_AUTH"],
        "var.database_auth"
    );
}
