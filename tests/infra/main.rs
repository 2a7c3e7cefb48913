//! The Terraform stack cross-checked against the code, without AWS or a Terraform binary: every
//! `.tf` file is parsed with an HCL parser, and what the stack deploys is compared with what the
//! gateway definition and the workers expect. Expressions that decide something (a count, a
//! filter, a chosen value) are evaluated with the variables set as a deployment would set them.
//! `mail` checks the SES side, `identity` the switch between the built-in logins and Cognito,
//! `documents` the bucket the worker keeps documents in, `functions` the three functions of the
//! one package (worker, admin, sweeper) and what each may do, `hardening` what faces the
//! internet and the network (queues, endpoints, WAF, throttles, partition, provider, secrets,
//! the package), `monitoring` the dashboard and the alarms, `providers` the Terraform version and
//! the committed lock file, `web` the household web app's bucket, its CloudFront distribution and
//! headers, and the one origin the API allows.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use hcl::eval::{Context, Evaluate, FuncDef, ParamType};
use hcl::{Block, Body, Expression};

mod documents;
mod functions;
mod hardening;
mod identity;
mod mail;
mod monitoring;
mod payments;
mod providers;
mod web;

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

    /// A context with `var.*` (the variables that have defaults) and the functions of [`functions`].
    fn context(&self) -> Context<'static> {
        self.context_with(&[])
    }

    /// [`Stack::context`] in an account: `data.aws_caller_identity.current.account_id`.
    fn context_in_account(&self, account_id: &str) -> Context<'static> {
        let mut ctx = self.context();
        let caller: hcl::Value = [("account_id", account_id)].into_iter().collect();
        let data: hcl::Value = [(
            "aws_caller_identity",
            [("current", caller)].into_iter().collect::<hcl::Value>(),
        )]
        .into_iter()
        .collect();
        ctx.declare_var("data", data);
        ctx
    }

    /// [`Stack::context`] with some variables set, as `-var name=value` would.
    fn context_with(&self, set: &[(&str, hcl::Value)]) -> Context<'static> {
        let mut vars = hcl::Map::new();
        for variable in self.blocks("variable") {
            if let Some(default) = variable.body().attributes().find(|a| a.key() == "default")
                && let Ok(value) = default.expr().evaluate(&Context::new())
            {
                vars.insert(variable.labels()[0].as_str().to_owned(), value);
            }
        }
        for (name, value) in set {
            assert!(
                self.blocks("variable")
                    .any(|v| v.labels()[0].as_str() == *name),
                "no variable {name}"
            );
            vars.insert(name.to_string(), value.clone());
        }
        let mut ctx = Context::new();
        ctx.declare_var("var", hcl::Value::Object(vars));
        for (name, func) in functions() {
            ctx.declare_func(name, func);
        }
        ctx
    }

    /// The values of some locals, each evaluated in `ctx` with the ones before it as `local.*`.
    fn locals(&self, names: &[&str], ctx: &Context<'_>) -> hcl::Map<String, hcl::Value> {
        let mut locals = hcl::Map::new();
        for name in names {
            let mut ctx = ctx.clone();
            ctx.declare_var("local", hcl::Value::Object(locals.clone()));
            let value = self
                .local(name)
                .evaluate(&ctx)
                .unwrap_or_else(|e| panic!("local.{name} does not evaluate: {e}"));
            locals.insert(name.to_string(), value);
        }
        locals
    }

    /// Evaluates an expression that only refers to variables with defaults and to locals that do.
    fn evaluate(&self, expr: &Expression) -> String {
        match expr.evaluate(&self.context()) {
            Ok(hcl::Value::String(s)) => s,
            other => panic!("{} does not evaluate to a string: {other:?}", text(expr)),
        }
    }

    /// The JSON a `jsonencode(...)` expression renders, with `extra` variables besides `var`.
    fn json(&self, expr: &Expression, extra: &[(&str, hcl::Value)]) -> serde_json::Value {
        let mut ctx = self.context();
        for (name, value) in extra {
            ctx.declare_var(*name, value.clone());
        }
        match expr.evaluate(&ctx) {
            Ok(hcl::Value::String(s)) => serde_json::from_str(&s)
                .unwrap_or_else(|e| panic!("{} is not JSON ({e}): {s}", text(expr))),
            other => panic!("{} does not evaluate to a string: {other:?}", text(expr)),
        }
    }

    /// The resources of a type whose `key` is exactly `value` (an expression's text).
    fn resources_where<'a>(
        &'a self,
        kind: &'a str,
        key: &'a str,
        value: &'a str,
    ) -> impl Iterator<Item = &'a Block> + 'a {
        self.blocks("resource").filter(move |b| {
            b.labels()[0].as_str() == kind
                && b.body()
                    .attributes()
                    .any(|a| a.key() == key && text(a.expr()) == value)
        })
    }
}

/// The Terraform functions the evaluated expressions call, as Terraform defines them.
fn functions() -> Vec<(&'static str, FuncDef)> {
    let jsonencode = FuncDef::new(
        |args| {
            serde_json::to_string(&args[0])
                .map(hcl::Value::String)
                .map_err(|e| e.to_string())
        },
        [ParamType::Any],
    );
    let startswith = FuncDef::new(
        |args| match (&args[0], &args[1]) {
            (hcl::Value::String(s), hcl::Value::String(prefix)) => {
                Ok(hcl::Value::Bool(s.starts_with(prefix.as_str())))
            }
            other => Err(format!("startswith({other:?})")),
        },
        [ParamType::String, ParamType::String],
    );
    let coalesce = FuncDef::builder()
        .variadic_param(ParamType::Any)
        .build(|args| {
            args.iter()
                .find(|v| !v.is_null())
                .cloned()
                .ok_or_else(|| "coalesce: every argument is null".to_owned())
        });
    let concat = FuncDef::builder()
        .variadic_param(ParamType::array_of(ParamType::Any))
        .build(|args| {
            Ok(hcl::Value::Array(
                args.iter()
                    .flat_map(|v| v.as_array().cloned().unwrap_or_default())
                    .collect(),
            ))
        });
    let merge = FuncDef::builder()
        .variadic_param(ParamType::object_of(ParamType::Any))
        .build(|args| {
            let mut merged = hcl::Map::new();
            for object in args.iter().filter_map(|v| v.as_object()) {
                merged.extend(object.clone());
            }
            Ok(hcl::Value::Object(merged))
        });
    let join = FuncDef::new(
        |args| match (&args[0], &args[1]) {
            (hcl::Value::String(separator), hcl::Value::Array(items)) => items
                .iter()
                .map(|item| item.as_str().map(str::to_owned))
                .collect::<Option<Vec<_>>>()
                .map(|items| hcl::Value::String(items.join(separator)))
                .ok_or_else(|| format!("join: not a list of strings: {items:?}")),
            other => Err(format!("join({other:?})")),
        },
        [ParamType::String, ParamType::array_of(ParamType::Any)],
    );
    vec![
        ("jsonencode", jsonencode),
        ("join", join),
        ("startswith", startswith),
        ("coalesce", coalesce),
        ("concat", concat),
        ("merge", merge),
    ]
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
    // The definition is put on the API by a resource of its own (web.rs says why).
    let put = stack.block("resource", &["aws_api_gateway_rest_api_put", "qbill"]);
    assert_eq!(text(attr(put, "body")), "local.openapi_body");
    assert_eq!(
        text(attr(put, "rest_api_id")),
        "aws_api_gateway_rest_api.qbill.id"
    );
    // The document is the template decoded, its paths filtered by the identity and its title
    // and description the API's own (tested in identity.rs).
    let rendered = text(stack.local("openapi_body"));
    assert!(
        rendered.starts_with("jsonencode(merge(local.openapi_document,")
            && rendered.contains("paths = local.openapi_paths"),
        "{rendered}"
    );
    let body = text(stack.local("openapi_document"));
    assert!(
        body.contains("templatefile(\"${path.module}/../gateway-config/openapi.yaml\""),
        "{body}"
    );
    assert!(
        body.starts_with("yamldecode("),
        "anchors must be resolved before API Gateway sees it: {body}"
    );
    let placeholders = gateway_placeholders();
    assert_eq!(
        placeholders,
        [
            "account_id",
            "allowed_origin",
            "aws_region",
            "gateway_role_arn",
            "partition",
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
    assert!(body.contains("partition = local.partition"), "{body}");
    assert_eq!(
        text(stack.local("partition")),
        "data.aws_partition.current.partition"
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
        reply_queue_arn_prefix: None,
        reply_idle_seconds: 86_400,
        sweep_interval_seconds: 0,
        overdue_interval_seconds: 0,
        due_soon_interval_seconds: 0,
        notify_interval_seconds: 0,
        expire_payments_interval_seconds: 0,
        reconcile_interval_seconds: 0,
        settle_interval_seconds: 0,
        events_interval_seconds: 0,
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
        lambda_environment(&stack, worker)["QBILL_REPLY_QUEUE_PREFIX"],
        "local.reply_queue_prefix"
    );
    assert_eq!(
        text(stack.local("reply_queue_arn_pattern")),
        "\"${local.reply_queue_arn_prefix}*\""
    );
    assert!(
        text(stack.local("reply_queue_arn_prefix")).ends_with(":${local.reply_queue_prefix}\"")
    );
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

/// Every variable the worker's environment can hold, with its expression's text: the object
/// literal of `environment.variables`, or `merge(...)` of such literals and of locals that are
/// one, or a conditional choosing between two (both sides count).
fn lambda_environment(stack: &Stack, worker: &Block) -> BTreeMap<String, String> {
    fn collect(stack: &Stack, expr: &Expression, into: &mut BTreeMap<String, String>) {
        match expr {
            Expression::Object(map) => {
                for (key, value) in map {
                    let key = match key {
                        hcl::ObjectKey::Identifier(id) => id.to_string(),
                        hcl::ObjectKey::Expression(e) => text(e).trim_matches('"').to_owned(),
                        other => panic!("unexpected key {other:?}"),
                    };
                    into.insert(key, text(value));
                }
            }
            Expression::FuncCall(call) if call.name.name.as_str() == "merge" => {
                for arg in &call.args {
                    collect(stack, arg, into);
                }
            }
            Expression::Conditional(conditional) => {
                collect(stack, &conditional.true_expr, into);
                collect(stack, &conditional.false_expr, into);
            }
            other => match text(other).strip_prefix("local.") {
                Some(name) => collect(stack, stack.local(name), into),
                None => panic!(
                    "environment.variables is not made of object literals: {}",
                    text(other)
                ),
            },
        }
    }
    let environment = worker
        .body()
        .blocks()
        .find(|b| b.identifier() == "environment")
        .expect("an environment block");
    let mut variables = BTreeMap::new();
    collect(stack, attr(environment, "variables"), &mut variables);
    variables
}

/// The `.rs` files under `dir`, in every subdirectory.
fn rust_sources(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{} cannot be read: {e}", dir.display()))
        {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    files
}

/// Every environment variable name the Lambda's code can read: string literals naming one in
/// the sources of the crates it runs (every module, however deep).
fn variables_read_by_the_lambda() -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for dir in ["workers/core/src", "workers/sqs/src", "workers/lambda/src"] {
        for path in rust_sources(&Path::new(ROOT).join(dir)) {
            let source = std::fs::read_to_string(&path).unwrap();
            for prefix in ["\"QBILL_", "\"DATABASE_URL\"", "\"REDIS_URL\""] {
                for (i, _) in source.match_indices(prefix) {
                    let end = source[i + 1..].find('"').unwrap() + i + 1;
                    let name = &source[i + 1..end];
                    // A whole name: not the bare prefix that code matching names spells.
                    let whole = !name.ends_with('_');
                    if whole && name.bytes().all(|b| b.is_ascii_uppercase() || b == b'_') {
                        names.insert(name.to_owned());
                    }
                }
            }
        }
    }
    names
}

/// Read by the code but rightly left to their defaults (or meaningless) on Lambda.
const NOT_SET_ON_LAMBDA: [(&str, &str); 32] = [
    (
        "DATABASE_URL",
        "only for QBILL_DATABASE_AUTH=url, the local mode",
    ),
    (
        "QBILL_MIGRATION_DATABASE_URL",
        "the local mode's owner login; the admin function reads QBILL_DATABASE_MASTER_SECRET_ARN",
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
    (
        "QBILL_OVERDUE_INTERVAL_SECONDS",
        "the worker pool's; on Lambda a daily EventBridge schedule runs the overdue job",
    ),
    (
        "QBILL_DUE_SOON_INTERVAL_SECONDS",
        "the worker pool's; on Lambda a daily EventBridge schedule runs the due-soon job",
    ),
    (
        "QBILL_NOTIFY_INTERVAL_SECONDS",
        "the worker pool's; on Lambda an EventBridge schedule drains the outbox every minute",
    ),
    (
        "QBILL_SIGNUPS_PER_SOURCE_PER_HOUR",
        "the default signup throttle",
    ),
    ("QBILL_SIGNUPS_PER_HOUR", "the default signup throttle"),
    (
        "QBILL_RESETS_PER_SOURCE_PER_HOUR",
        "the default password reset throttle",
    ),
    (
        "QBILL_STRIPE_API_BASE",
        "the default is Stripe's own API; only the local fake needs another",
    ),
    (
        "QBILL_STRIPE_SECRET_KEY",
        "a local key; the Lambda reads QBILL_STRIPE_SECRET_ARN",
    ),
    (
        "QBILL_STRIPE_WEBHOOK_SECRET",
        "a local secret; the Lambda reads QBILL_STRIPE_SECRET_ARN",
    ),
    (
        "QBILL_STRIPE_PREVIOUS_WEBHOOK_SECRET",
        "a local secret; the secret's previous_webhook_secret plays its part",
    ),
    (
        "QBILL_EXPIRE_PAYMENTS_INTERVAL_SECONDS",
        "the worker pool's; on Lambda an EventBridge schedule runs the expiry job",
    ),
    (
        "QBILL_RECONCILE_INTERVAL_SECONDS",
        "the worker pool's; on Lambda an EventBridge schedule reconciles",
    ),
    (
        "QBILL_SETTLE_INTERVAL_SECONDS",
        "the worker pool's; on Lambda an EventBridge schedule closes the settlements",
    ),
    (
        "QBILL_EVENTS_INTERVAL_SECONDS",
        "the worker pool's; on Lambda an EventBridge schedule delivers the webhooks",
    ),
    (
        "QBILL_WEBHOOKS_ALLOW_LOCAL",
        "the local stack's loopback receivers only; on AWS webhooks go to public https addresses",
    ),
    (
        "QBILL_MAIL_DOCUMENT_URL_SECONDS",
        "the default 7 days; a Lambda's own credentials end the link sooner, and the mail says when",
    ),
];

/// The three functions of the one package, by the value of their QBILL_FUNCTION.
const FUNCTIONS: [&str; 3] = ["worker", "admin", "sweeper"];

#[test]
fn every_environment_variable_the_lambda_reads_is_set_or_rightly_defaulted() {
    let stack = Stack::load();
    // What any of the three functions is given: the code reads them all, whichever it runs as.
    let mut set = BTreeSet::new();
    for function in FUNCTIONS {
        let block = stack.block("resource", &["aws_lambda_function", function]);
        let environment = lambda_environment(&stack, block);
        assert_eq!(
            environment["QBILL_FUNCTION"],
            format!("\"{function}\""),
            "{function} says which function it is"
        );
        set.extend(environment.into_keys());
    }
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
    let worker = stack.block("resource", &["aws_lambda_function", "worker"]);
    assert_eq!(
        lambda_environment(&stack, worker)["QBILL_DATABASE_AUTH"],
        "var.database_auth"
    );
}

/// The scheduled jobs: for each, an EventBridge rule on its schedule variable, one target
/// invoking its function with the job's event, and the permission for that rule to invoke it.
/// The sweep runs in the sweeper, the billing jobs in the worker; nothing schedules the admin
/// function.
#[test]
fn schedules_invoke_the_sweeper_with_the_sweep_and_the_worker_with_the_billing_and_payment_jobs() {
    let stack = Stack::load();
    let mut statement_ids = BTreeMap::<String, BTreeSet<String>>::new();
    let jobs = [
        ("sweep", "var.reply_sweep_schedule", "sweep", "sweeper"),
        ("overdue", "var.overdue_schedule", "overdue", "worker"),
        ("notify", "var.notify_schedule", "notify", "worker"),
        ("due_soon", "var.due_soon_schedule", "due-soon", "worker"),
        (
            "expire_payments",
            "var.expire_payments_schedule",
            "expire-payments",
            "worker",
        ),
        ("reconcile", "var.reconcile_schedule", "reconcile", "worker"),
        ("settle", "var.settle_schedule", "settle", "worker"),
        ("events", "var.events_schedule", "events", "worker"),
    ];
    // No rule without its job: every rule of the stack is one of these.
    let rules: BTreeSet<_> = stack
        .blocks("resource")
        .filter(|b| b.labels()[0].as_str() == "aws_cloudwatch_event_rule")
        .map(|b| b.labels()[1].as_str().to_owned())
        .collect();
    assert_eq!(
        rules,
        jobs.iter().map(|(rule, ..)| rule.to_string()).collect()
    );
    for (rule_name, schedule, event, function) in jobs {
        let rule = stack.block("resource", &["aws_cloudwatch_event_rule", rule_name]);
        assert_eq!(text(attr(rule, "schedule_expression")), schedule);
        let rule_ref = format!("aws_cloudwatch_event_rule.{rule_name}");

        let rule_name_ref = format!("{rule_ref}.name");
        let targets: Vec<_> = stack
            .resources_where("aws_cloudwatch_event_target", "rule", &rule_name_ref)
            .collect();
        assert_eq!(targets.len(), 1, "one target of {rule_ref}: {targets:?}");
        assert_eq!(
            text(attr(targets[0], "arn")),
            format!("aws_lambda_function.{function}.arn")
        );
        assert_eq!(
            stack.json(attr(targets[0], "input"), &[]),
            serde_json::json!({ "qbill": event }),
            "the event {rule_ref} invokes the {function} with"
        );

        let rule_arn_ref = format!("{rule_ref}.arn");
        let permissions: Vec<_> = stack
            .resources_where("aws_lambda_permission", "source_arn", &rule_arn_ref)
            .collect();
        assert_eq!(permissions.len(), 1, "one permission for {rule_ref}");
        let permission = permissions[0];
        assert_eq!(
            text(attr(permission, "principal")),
            "\"events.amazonaws.com\""
        );
        assert_eq!(
            text(attr(permission, "action")),
            "\"lambda:InvokeFunction\""
        );
        assert!(
            text(attr(permission, "function_name"))
                .starts_with(&format!("aws_lambda_function.{function}."))
        );
        assert!(
            statement_ids
                .entry(function.to_owned())
                .or_default()
                .insert(text(attr(permission, "statement_id"))),
            "statement ids of one function's permissions must differ"
        );
    }

    // The overdue and due-soon jobs run once a day: rate(1 day), or a cron at one minute of one
    // hour. The notification sender runs every minute.
    let default_schedule =
        |variable: &str| stack.evaluate(attr(stack.block("variable", &[variable]), "default"));
    for variable in ["overdue_schedule", "due_soon_schedule"] {
        let schedule = default_schedule(variable);
        let daily = schedule == "rate(1 day)"
            || schedule
                .strip_prefix("cron(")
                .and_then(|s| s.strip_suffix(')'))
                .is_some_and(|cron| {
                    let fields: Vec<_> = cron.split_whitespace().collect();
                    let number = |f: &str| !f.is_empty() && f.bytes().all(|b| b.is_ascii_digit());
                    fields.len() == 6
                        && number(fields[0])
                        && number(fields[1])
                        && ["*", "?"].contains(&fields[2])
                        && fields[3] == "*"
                        && ["*", "?"].contains(&fields[4])
                        && fields[5] == "*"
                });
        assert!(daily, "{variable}'s default is not daily: {schedule}");
    }
    assert_eq!(default_schedule("notify_schedule"), "rate(1 minute)");

    // The admin function is invoked by an operator only: no permission lets anything else in.
    let admin_permissions = stack.blocks("resource").filter(|b| {
        b.labels()[0].as_str() == "aws_lambda_permission"
            && text(attr(b, "function_name")).starts_with("aws_lambda_function.admin.")
    });
    assert_eq!(
        admin_permissions.count(),
        0,
        "nothing may invoke the admin function"
    );
}

/// `{"qbill": "create-operator"}` reads the first operator from a generated secret named in
/// QBILL_OPERATOR_SECRET_ARN, which the admin function, and not the internet-facing worker, may
/// read.
#[test]
fn the_admin_function_reads_the_first_operator_from_a_generated_secret_and_the_worker_cannot() {
    let stack = Stack::load();
    let secret_arn = "aws_secretsmanager_secret.first_operator.arn";
    let admin = stack.block("resource", &["aws_lambda_function", "admin"]);
    assert_eq!(
        lambda_environment(&stack, admin)["QBILL_OPERATOR_SECRET_ARN"],
        secret_arn
    );
    let worker = stack.block("resource", &["aws_lambda_function", "worker"]);
    assert!(
        !lambda_environment(&stack, worker).contains_key("QBILL_OPERATOR_SECRET_ARN"),
        "the worker is not told the operator secret"
    );
    let worker_policy = stack.block("data", &["aws_iam_policy_document", "worker"]);
    assert!(
        worker_policy
            .body()
            .blocks()
            .all(|s| !text(attr(s, "resources")).contains(secret_arn)),
        "the worker's role may not read the operator secret"
    );

    // Encrypted like its neighbours; the value is JSON {username, password}, the password generated.
    let secret = stack.block("resource", &["aws_secretsmanager_secret", "first_operator"]);
    assert_eq!(text(attr(secret, "kms_key_id")), "aws_kms_key.data.arn");
    let version = stack.block(
        "resource",
        &["aws_secretsmanager_secret_version", "first_operator"],
    );
    assert_eq!(
        text(attr(version, "secret_id")),
        "aws_secretsmanager_secret.first_operator.id"
    );
    let generated: hcl::Value = [(
        "first_operator",
        hcl::Value::from_iter([("result", "generated-password")]),
    )]
    .into_iter()
    .collect();
    assert_eq!(
        stack.json(
            attr(version, "secret_string"),
            &[("random_password", generated)]
        ),
        serde_json::json!({ "username": "ops", "password": "generated-password" })
    );
    let password = stack.block("resource", &["random_password", "first_operator"]);
    let length: u32 = text(attr(password, "length")).parse().unwrap();
    assert!(length >= 20, "a generated password of {length} characters");

    // The admin's role may read it (GetSecretValue, by its ARN); nothing grants secrets broadly.
    let policy = stack.block("data", &["aws_iam_policy_document", "admin"]);
    let statements: Vec<_> = policy
        .body()
        .blocks()
        .filter(|b| b.identifier() == "statement")
        .collect();
    let reading: Vec<_> = statements
        .iter()
        .filter(|s| text(attr(s, "resources")).contains(secret_arn))
        .collect();
    assert_eq!(reading.len(), 1, "one statement grants the operator secret");
    assert_eq!(
        attr(reading[0], "actions")
            .evaluate(&Context::new())
            .unwrap(),
        hcl::Value::from(vec!["secretsmanager:GetSecretValue"])
    );
    for statement in &statements {
        if text(attr(statement, "actions")).contains("secretsmanager:") {
            assert!(
                !text(attr(statement, "resources")).contains("\"*\""),
                "secrets are granted by ARN"
            );
        }
    }

    // Its ARN, not its value, is an output.
    let output = stack.block("output", &["first_operator_secret_arn"]);
    assert_eq!(text(attr(output, "value")), secret_arn);
}

/// The variables a deployment must set (they have no default), plus `more`.
fn deployment(more: &[(&'static str, hcl::Value)]) -> Vec<(&'static str, hcl::Value)> {
    let mut set = vec![
        ("web_url", hcl::Value::from("https://billing.example.com")),
        ("mail_from_address", hcl::Value::from("billing@example.com")),
    ];
    set.extend(more.iter().cloned());
    set
}

/// `{ name: [ { attribute: value, ... } ] }`: a resource with `count = 1`, as `type.name[0]` sees it.
fn counted(name: &str, attributes: &[(&str, &str)]) -> hcl::Value {
    let instance: hcl::Value = attributes.iter().map(|(k, v)| (*k, *v)).collect();
    [(name, hcl::Value::Array(vec![instance]))]
        .into_iter()
        .collect()
}

fn strings(value: &hcl::Value) -> BTreeSet<String> {
    value
        .as_array()
        .unwrap_or_else(|| panic!("not a list: {value}"))
        .iter()
        .map(|v| v.as_str().expect("a string").to_owned())
        .collect()
}
