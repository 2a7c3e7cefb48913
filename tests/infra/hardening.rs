//! What a real account needs around the functions: queues that refuse plain HTTP, endpoint
//! policies that admit the stack's resources only, a web ACL with a tighter per-address limit on
//! POSTs without a token and lower throttles on the anonymous /auth* routes, no partition written
//! as `aws`, a provider that has every argument used, secrets deleted after the configured
//! window, and a Lambda zip that is reproducible.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use hcl::eval::{Context, Evaluate};

use crate::documents::nested;
use crate::{ROOT, Stack, attr, counted, text};

#[test]
fn every_queue_of_the_stack_refuses_requests_without_tls() {
    let stack = Stack::load();
    let queues: BTreeSet<String> = stack
        .blocks("resource")
        .filter(|b| b.labels()[0].as_str() == "aws_sqs_queue")
        .map(|b| format!("aws_sqs_queue.{}", b.labels()[1].as_str()))
        .collect();
    assert_eq!(
        queues.len(),
        4,
        "requests, its DLQ, sweep, its DLQ: {queues:?}"
    );
    let covered: BTreeSet<String> = match stack.local("stack_queues") {
        hcl::Expression::Object(map) => map.values().map(text).collect(),
        other => panic!("local.stack_queues is not an object: {}", text(other)),
    };
    assert_eq!(
        covered, queues,
        "every aws_sqs_queue has the TLS-only policy"
    );

    let policy = stack.block("resource", &["aws_sqs_queue_policy", "tls_only"]);
    assert_eq!(text(attr(policy, "for_each")), "local.stack_queues");
    assert_eq!(text(attr(policy, "queue_url")), "each.value.id");
    assert_eq!(
        text(attr(policy, "policy")),
        "data.aws_iam_policy_document.queue_tls_only[each.key].json"
    );
    let document = stack.block("data", &["aws_iam_policy_document", "queue_tls_only"]);
    assert_eq!(text(attr(document, "for_each")), "local.stack_queues");
    let statements: Vec<_> = document
        .body()
        .blocks()
        .filter(|b| b.identifier() == "statement")
        .collect();
    assert_eq!(statements.len(), 1);
    let statement = statements[0];
    let literal =
        |block: &hcl::Block, key: &str| attr(block, key).evaluate(&Context::new()).unwrap();
    assert_eq!(literal(statement, "effect"), "Deny".into());
    assert_eq!(literal(statement, "actions"), vec!["sqs:*"].into());
    assert_eq!(
        text(attr(statement, "resources"))
            .split_whitespace()
            .collect::<String>(),
        "[each.value.arn]"
    );
    let principals = statement
        .body()
        .blocks()
        .find(|b| b.identifier() == "principals")
        .unwrap();
    assert_eq!(literal(principals, "identifiers"), vec!["*"].into());
    let condition = statement
        .body()
        .blocks()
        .find(|b| b.identifier() == "condition")
        .unwrap();
    assert_eq!(literal(condition, "test"), "Bool".into());
    assert_eq!(literal(condition, "variable"), "aws:SecureTransport".into());
    assert_eq!(literal(condition, "values"), vec!["false"].into());
}

#[test]
fn interface_endpoints_admit_the_stacks_own_resources_only() {
    let stack = Stack::load();
    let endpoint = stack.block("resource", &["aws_vpc_endpoint", "interface"]);
    assert_eq!(
        text(attr(endpoint, "policy")),
        "local.interface_endpoint_policies[each.key]"
    );
    let queue = |arn: &str| -> hcl::Value { [("arn", arn)].into_iter().collect() };
    let mut local: hcl::Map<String, hcl::Value> = [
        ("account_id", hcl::Value::from("123456789012")),
        ("cognito", true.into()),
        ("reply_queue_arn_pattern", "arn:reply-*".into()),
        ("account_queues_arn", "arn:queues-*".into()),
        ("mail_identity_arn", "arn:sender".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let mut ctx = stack.context();
    ctx.declare_var("local", hcl::Value::Object(local.clone()));
    let principals = stack.local("account_principals").evaluate(&ctx).unwrap();
    local.insert("account_principals".to_owned(), principals);
    ctx.declare_var("local", hcl::Value::Object(local));
    ctx.declare_var(
        "aws_sqs_queue",
        [("sweep", queue("arn:sweep"))]
            .into_iter()
            .collect::<hcl::Value>(),
    );
    ctx.declare_var(
        "aws_secretsmanager_secret",
        ["jwt", "redis_auth", "database_password", "first_operator"]
            .into_iter()
            .map(|name| (name, queue(&format!("arn:secret:{name}"))))
            .collect::<hcl::Value>(),
    );
    let master: hcl::Value = [(
        "master_user_secret",
        hcl::Value::Array(vec![
            [("secret_arn", "arn:secret:master")].into_iter().collect(),
        ]),
    )]
    .into_iter()
    .collect();
    ctx.declare_var(
        "aws_db_instance",
        [("qbill", master)].into_iter().collect::<hcl::Value>(),
    );
    ctx.declare_var(
        "aws_ses_email_identity",
        [("sandbox_recipient", hcl::Value::Object(hcl::Map::new()))]
            .into_iter()
            .collect::<hcl::Value>(),
    );
    ctx.declare_var(
        "aws_cognito_user_pool",
        counted("qbill", &[("arn", "arn:pool")]),
    );
    let policies = stack
        .local("interface_endpoint_policies")
        .evaluate(&ctx)
        .unwrap_or_else(|e| panic!("the endpoint policies do not evaluate: {e}"));
    let policies = policies.as_object().unwrap();
    let services: BTreeSet<&str> = policies.keys().map(String::as_str).collect();
    assert_eq!(
        services,
        ["sqs", "secretsmanager", "email", "cognito-idp"].into(),
        "a policy for every service interface_endpoint_services can hold"
    );
    let policy = |service: &str| -> serde_json::Value {
        serde_json::from_str(policies[service].as_str().unwrap()).unwrap()
    };
    let resources = |service: &str| -> BTreeSet<String> {
        policy(service)["Statement"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|s| s["Resource"].as_array().unwrap().clone())
            .map(|r| r.as_str().unwrap().to_owned())
            .collect()
    };
    let set = |items: &[&str]| items.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
    assert_eq!(
        resources("sqs"),
        set(&["arn:reply-*", "arn:sweep", "arn:queues-*"])
    );
    assert_eq!(
        resources("secretsmanager"),
        set(&[
            "arn:secret:jwt",
            "arn:secret:redis_auth",
            "arn:secret:database_password",
            "arn:secret:first_operator",
            "arn:secret:master",
        ])
    );
    assert_eq!(resources("email"), set(&["arn:sender"]));
    assert_eq!(resources("cognito-idp"), set(&["arn:pool"]));
    for service in ["sqs", "secretsmanager", "email"] {
        for statement in policy(service)["Statement"].as_array().unwrap() {
            assert_eq!(statement["Effect"], "Allow");
            assert_eq!(
                statement["Condition"]["StringEquals"]["aws:PrincipalAccount"], "123456789012",
                "{service}: this account's principals only"
            );
            assert!(
                !statement["Action"].to_string().contains(":*"),
                "{service}: actions are named"
            );
        }
    }
    // ListQueues alone is granted account-wide (it has no queue resource).
    for statement in policy("sqs")["Statement"].as_array().unwrap() {
        let actions = statement["Action"].to_string();
        if statement["Resource"].to_string().contains("arn:queues-*") {
            assert_eq!(statement["Action"], serde_json::json!(["sqs:ListQueues"]));
        } else {
            assert!(!actions.contains("ListQueues"));
        }
    }
}

#[test]
fn a_web_acl_guards_the_stage_by_default_with_a_tighter_limit_on_posts_without_a_token() {
    let stack = Stack::load();
    // The stack's own web ACL unless one is brought, and exactly one association either way.
    assert_eq!(text(stack.local("waf_own")), "var.waf_web_acl_arn == null");
    let acl = stack.block("resource", &["aws_wafv2_web_acl", "qbill"]);
    assert_eq!(text(attr(acl, "count")), "local.waf_own ? 1 : 0");
    assert_eq!(text(attr(acl, "scope")), "\"REGIONAL\"");
    let own = stack.block("resource", &["aws_wafv2_web_acl_association", "own"]);
    let brought = stack.block("resource", &["aws_wafv2_web_acl_association", "qbill"]);
    for (association, count, acl) in [
        (
            own,
            "local.waf_own ? 1 : 0",
            "aws_wafv2_web_acl.qbill[0].arn",
        ),
        (brought, "local.waf_own ? 0 : 1", "var.waf_web_acl_arn"),
    ] {
        assert_eq!(text(attr(association, "count")), count);
        assert_eq!(
            text(attr(association, "resource_arn")),
            "aws_api_gateway_stage.qbill.arn"
        );
        assert_eq!(text(attr(association, "web_acl_arn")), acl);
    }
    let default_acl = stack.block("variable", &["waf_web_acl_arn"]);
    assert_eq!(text(attr(default_acl, "default")), "null", "on by default");

    // Rate-based rules per source IP: a tighter one over every POST that carries no bearer token
    // (each may make the worker create a reply queue) and every POST to /auth*, and one over
    // everything.
    let acl_text = hcl::format::to_string(acl.body()).unwrap();
    let rules: Vec<_> = acl
        .body()
        .blocks()
        .filter(|b| b.identifier() == "rule")
        .collect();
    let rule = |name: &str| {
        *rules
            .iter()
            .find(|r| text(attr(r, "name")) == format!("\"{name}\""))
            .unwrap_or_else(|| panic!("no rule {name}: {acl_text}"))
    };
    let priority = |name: &str| -> u64 { text(attr(rule(name), "priority")).parse().unwrap() };
    let body = |name: &str| hcl::format::to_string(rule(name).body()).unwrap();

    // The label: a POST without "Bearer ..." in its Authorization header (none at all included:
    // a missing header matches no statement, so the not_statement matches it). Counted, not
    // blocked: the label is what the rate rule counts.
    let label = "qbill:tokenless-post";
    let tokenless = rule("tokenless-post");
    let tokenless_text = body("tokenless-post");
    assert!(tokenless_text.contains("count {"), "{tokenless_text}");
    assert_eq!(
        text(attr(nested(tokenless, "rule_label"), "name")),
        format!("\"{label}\""),
        "{tokenless_text}"
    );
    let matches = nested(nested(tokenless, "statement"), "and_statement");
    let parts: Vec<_> = matches
        .body()
        .blocks()
        .filter(|b| b.identifier() == "statement")
        .collect();
    assert_eq!(
        parts.len(),
        3,
        "POST, no bearer token, not a processor's webhook: {tokenless_text}"
    );
    // The payments processor's webhooks (signed, checked by the worker, making no queue) are
    // left to the per-address rule over everything.
    let webhook = nested(
        nested(nested(parts[2], "not_statement"), "statement"),
        "byte_match_statement",
    );
    assert_eq!(text(attr(webhook, "search_string")), "\"/webhooks/stripe\"");
    assert_eq!(
        text(attr(webhook, "positional_constraint")),
        "\"ENDS_WITH\""
    );
    nested(nested(webhook, "field_to_match"), "uri_path");
    let method = hcl::format::to_string(parts[0].body()).unwrap();
    assert!(
        method.contains("search_string = \"POST\"") && method.contains("method {"),
        "{method}"
    );
    let not = nested(parts[1], "not_statement");
    let bearer = nested(nested(not, "statement"), "byte_match_statement");
    assert_eq!(
        text(attr(bearer, "search_string")),
        "\"bearer \"",
        "the scheme, lower-cased"
    );
    assert_eq!(
        text(attr(bearer, "positional_constraint")),
        "\"STARTS_WITH\""
    );
    let header = nested(nested(bearer, "field_to_match"), "single_header");
    assert_eq!(text(attr(header, "name")), "\"authorization\"");
    let transformation =
        hcl::format::to_string(nested(bearer, "text_transformation").body()).unwrap();
    assert!(
        transformation.contains("type = \"LOWERCASE\""),
        "Bearer and bearer alike: {transformation}"
    );

    // The rate rule counts that label and the POSTs to /auth*, and runs after the label is set.
    assert!(priority("tokenless-post") < priority("tokenless-per-ip"));
    let limited = body("tokenless-per-ip");
    assert!(
        limited.contains("limit = var.waf_auth_rate_limit"),
        "{limited}"
    );
    assert!(limited.contains("aggregate_key_type = \"IP\""), "{limited}");
    assert!(limited.contains("block {"), "{limited}");
    let scope = nested(
        nested(
            nested(rule("tokenless-per-ip"), "statement"),
            "rate_based_statement",
        ),
        "scope_down_statement",
    );
    let either: Vec<_> = nested(scope, "or_statement")
        .body()
        .blocks()
        .filter(|b| b.identifier() == "statement")
        .collect();
    assert_eq!(either.len(), 2, "{limited}");
    let by_label = nested(either[0], "label_match_statement");
    assert_eq!(text(attr(by_label, "scope")), "\"LABEL\"");
    assert_eq!(text(attr(by_label, "key")), format!("\"{label}\""));
    let auth = hcl::format::to_string(nested(either[1], "and_statement").body()).unwrap();
    assert!(auth.contains("search_string = \"POST\""), "{auth}");
    assert!(auth.contains("search_string = \"/auth\""), "{auth}");
    assert!(
        rules
            .iter()
            .all(|r| text(attr(r, "name")) != "\"auth-per-ip\""),
        "the /auth-only rule is gone: {acl_text}"
    );

    let all = body("requests-per-ip");
    assert!(all.contains("limit = var.waf_rate_limit"), "{all}");
    assert!(all.contains("aggregate_key_type = \"IP\""), "{all}");
    assert!(!all.contains("scope_down_statement"), "{all}");

    // The file's summary and the README say what the tighter rule counts.
    let waf = std::fs::read_to_string(Path::new(ROOT).join("terraform/waf.tf")).unwrap();
    let summary: String = waf
        .lines()
        .take_while(|l| l.starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        summary.contains("tokenless-post") && summary.contains("tokenless-per-ip"),
        "{summary}"
    );
    let readme = std::fs::read_to_string(Path::new(ROOT).join("terraform/README.md")).unwrap();
    let row = readme
        .lines()
        .find(|l| l.starts_with("| `waf_auth_rate_limit`"))
        .expect("the variable's row");
    assert!(
        row.contains("without a bearer token") && row.contains("/auth*"),
        "{row}"
    );

    // WAF logs, tokens redacted.
    let logging = stack.block(
        "resource",
        &["aws_wafv2_web_acl_logging_configuration", "qbill"],
    );
    assert_eq!(
        text(attr(logging, "resource_arn")),
        "aws_wafv2_web_acl.qbill[0].arn"
    );
    let logging_text = hcl::format::to_string(logging.body()).unwrap();
    assert!(
        logging_text.contains("name = \"authorization\""),
        "{logging_text}"
    );
    let group = stack.block("resource", &["aws_cloudwatch_log_group", "waf"]);
    assert!(text(attr(group, "name")).starts_with("\"aws-waf-logs-"));

    // The skip that said there was no WAF is gone.
    let apigateway =
        std::fs::read_to_string(Path::new(ROOT).join("terraform/apigateway.tf")).unwrap();
    assert!(!apigateway.contains("CKV2_AWS_29"));
}

#[test]
fn the_auth_posts_are_throttled_below_the_rest_of_the_stage() {
    let stack = Stack::load();
    let settings = stack.block("resource", &["aws_api_gateway_method_settings", "auth"]);
    assert_eq!(
        text(attr(settings, "for_each")),
        "toset(local.auth_post_paths)"
    );
    assert_eq!(
        text(attr(settings, "method_path")),
        "\"${replace(each.key, \"/\", \"~1\")}/POST\""
    );
    let inner = settings
        .body()
        .blocks()
        .find(|b| b.identifier() == "settings")
        .unwrap();
    assert_eq!(
        text(attr(inner, "throttling_rate_limit")),
        "var.api_auth_throttle_rate_limit"
    );
    assert_eq!(
        text(attr(inner, "throttling_burst_limit")),
        "var.api_auth_throttle_burst_limit"
    );
    // A method's settings replace the stage's: the rest is repeated as it is for */*.
    let all = stack.block("resource", &["aws_api_gateway_method_settings", "all"]);
    let all_inner = all
        .body()
        .blocks()
        .find(|b| b.identifier() == "settings")
        .unwrap();
    for key in [
        "metrics_enabled",
        "logging_level",
        "data_trace_enabled",
        "caching_enabled",
    ] {
        assert_eq!(text(attr(inner, key)), text(attr(all_inner, key)), "{key}");
    }
    let default = |name: &str| -> f64 {
        text(attr(stack.block("variable", &[name]), "default"))
            .parse()
            .unwrap()
    };
    assert!(default("api_auth_throttle_rate_limit") < default("api_throttle_rate_limit"));
    assert!(default("api_auth_throttle_burst_limit") < default("api_throttle_burst_limit"));

    // Which methods: the POSTs under /auth of the deployed paths (none with Cognito).
    let item = |methods: &[&str]| -> hcl::Value {
        methods
            .iter()
            .map(|m| (m.to_string(), hcl::Value::Null))
            .collect()
    };
    let paths: hcl::Value = [
        ("/auth", item(&["post"])),
        ("/auth/signup", item(&["post"])),
        ("/auth/{queue_name}", item(&["get"])),
        ("/apartments/{apartment_id}/utils", item(&["post"])),
    ]
    .into_iter()
    .collect();
    let mut ctx = stack.context();
    ctx.declare_var(
        "local",
        [("openapi_paths", paths)]
            .into_iter()
            .collect::<hcl::Value>(),
    );
    let mut with_keys = ctx.clone();
    with_keys.declare_func(
        "keys",
        hcl::eval::FuncDef::new(
            |args| {
                Ok(hcl::Value::Array(
                    args[0]
                        .as_object()
                        .unwrap()
                        .keys()
                        .map(|k| hcl::Value::from(k.as_str()))
                        .collect(),
                ))
            },
            [hcl::eval::ParamType::Any],
        ),
    );
    with_keys.declare_func(
        "contains",
        hcl::eval::FuncDef::new(
            |args| {
                Ok(hcl::Value::Bool(
                    args[0].as_array().unwrap().contains(&args[1]),
                ))
            },
            [hcl::eval::ParamType::Any, hcl::eval::ParamType::Any],
        ),
    );
    let chosen = stack.local("auth_post_paths").evaluate(&with_keys).unwrap();
    assert_eq!(chosen, hcl::Value::from(vec!["/auth", "/auth/signup"]));
}

#[test]
fn no_arn_names_the_aws_partition_and_the_region_excludes_china() {
    for entry in std::fs::read_dir(Path::new(ROOT).join("terraform")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "tf") {
            let source = std::fs::read_to_string(&path).unwrap();
            assert!(
                !source.contains("arn:aws:"),
                "{} writes the partition as aws: use local.partition",
                path.display()
            );
        }
    }
    let template =
        std::fs::read_to_string(Path::new(ROOT).join("gateway-config/openapi.yaml")).unwrap();
    assert!(
        !template.contains("arn:aws:"),
        "the gateway template writes arn:aws:"
    );
    assert!(template.contains("arn:${partition}:apigateway:"));

    // Service names are written <service>.<region>.amazonaws.com: not China's amazonaws.com.cn.
    let stack = Stack::load();
    let region = stack.block("variable", &["aws_region"]);
    let validation = region
        .body()
        .blocks()
        .find(|b| b.identifier() == "validation")
        .unwrap();
    assert!(text(attr(validation, "condition")).contains("!startswith(var.aws_region, \"cn-\")"));
    assert!(
        stack
            .evaluate(attr(region, "description"))
            .contains("China")
    );
}

#[test]
fn the_aws_provider_admitted_has_every_argument_the_stack_uses() {
    let stack = Stack::load();
    let terraform = stack.blocks("terraform").next().expect("a terraform block");
    let providers = terraform
        .body()
        .blocks()
        .find(|b| b.identifier() == "required_providers")
        .unwrap();
    let aws = attr(providers, "aws").evaluate(&Context::new()).unwrap();
    let constraint = aws.as_object().unwrap()["version"]
        .as_str()
        .unwrap()
        .to_owned();
    let parts: Vec<_> = constraint.split(',').map(str::trim).collect();
    // auth_token_update_strategy (ElastiCache) arrived in 5.27 and aws_api_gateway_rest_api_put
    // later in 5.x; 5.100 has both. 6.0 may change what 5.x takes.
    assert_eq!(parts, [">= 5.100", "< 6.0"], "{constraint}");
    let redis = stack.block("resource", &["aws_elasticache_replication_group", "qbill"]);
    attr(redis, "auth_token_update_strategy");
    stack.block("resource", &["aws_api_gateway_rest_api_put", "qbill"]);
}

#[test]
fn every_secret_is_deleted_after_the_configured_recovery_window() {
    let stack = Stack::load();
    let secrets: Vec<_> = stack
        .blocks("resource")
        .filter(|b| b.labels()[0].as_str() == "aws_secretsmanager_secret")
        .collect();
    assert!(secrets.len() >= 4);
    for secret in secrets {
        assert_eq!(
            text(attr(secret, "recovery_window_in_days")),
            "var.secret_recovery_window_days",
            "{:?}",
            secret.labels()
        );
    }
    let variable = stack.block("variable", &["secret_recovery_window_days"]);
    let description = stack.evaluate(attr(variable, "description"));
    assert!(
        description.contains("re-deploy") && description.contains("force-deleted"),
        "the description says what the window means for a re-deploy: {description}"
    );
}

#[test]
fn the_jwt_key_is_rotated_through_terraform_so_no_later_apply_brings_an_old_key_back() {
    let stack = Stack::load();
    // Terraform owns the key: a new generation replaces the generated value, which replaces the
    // secret version (a new AWSCURRENT; the old key becomes AWSPREVIOUS, which the workers accept
    // for a token lifetime). A version written beside Terraform would leave Terraform's own
    // version, holding the old key, to come back as AWSCURRENT whenever Terraform recreates it.
    let key = stack.block("resource", &["random_password", "jwt"]);
    let keepers = text(attr(key, "keepers"));
    assert!(
        keepers.contains("generation = var.jwt_key_generation"),
        "a new generation is a new key: {keepers}"
    );
    let generation = stack.block("variable", &["jwt_key_generation"]);
    assert_eq!(text(attr(generation, "type")), "number");
    assert_eq!(text(attr(generation, "default")), "1");
    let version = stack.block("resource", &["aws_secretsmanager_secret_version", "jwt"]);
    assert_eq!(
        text(attr(version, "secret_string")),
        "random_password.jwt.result"
    );
    assert!(
        version
            .body()
            .attributes()
            .all(|a| a.key() != "version_stages"),
        "Terraform must not move AWSCURRENT itself"
    );
    assert!(
        version
            .body()
            .blocks()
            .all(|b| b.identifier() != "lifecycle"),
        "no ignore_changes: a new generation must reach the secret"
    );

    // The documented procedure is that one, not put-secret-value beside Terraform.
    let readme = std::fs::read_to_string(Path::new(ROOT).join("terraform/README.md")).unwrap();
    let row = readme
        .lines()
        .find(|l| l.starts_with("| `<name>/jwt-signing-key`"))
        .expect("the JWT key's rotation row");
    assert!(row.contains("jwt_key_generation"), "{row}");
    assert!(row.contains("AWSPREVIOUS"), "{row}");
    let procedure = row.split(" | ").nth(2).expect("the rotation column");
    assert!(procedure.starts_with("Through Terraform"), "{row}");
    assert_eq!(
        procedure.matches("put-secret-value").count(),
        procedure
            .matches("Do not put a value with `aws secretsmanager put-secret-value`")
            .count(),
        "put-secret-value only as what not to do: {row}"
    );
    let secrets = std::fs::read_to_string(Path::new(ROOT).join("terraform/secrets.tf")).unwrap();
    let header: String = secrets
        .lines()
        .take_while(|l| l.starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        header.contains("jwt_key_generation") && !header.contains("put-secret-value"),
        "{header}"
    );
}

#[test]
fn the_lambda_zip_is_the_same_bytes_for_the_same_files() {
    let dir = std::env::temp_dir().join(format!("qbill-zip-{}", std::process::id()));
    let files = dir.join("files");
    std::fs::create_dir_all(&files).unwrap();
    std::fs::write(files.join("bootstrap"), b"\x7fELF not really").unwrap();
    std::fs::write(
        files.join("rds-global-bundle.pem"),
        b"-----BEGIN CERTIFICATE-----\n",
    )
    .unwrap();
    let zip = |name: &str, mtime: &str| {
        let touched = Command::new("touch")
            .args(["-d", mtime])
            .arg(files.join("bootstrap"))
            .arg(files.join("rds-global-bundle.pem"))
            .status()
            .unwrap();
        assert!(touched.success());
        let out = dir.join(name);
        let status = Command::new(Path::new(ROOT).join("scripts/package-lambda"))
            .arg("--zip-dir")
            .arg(&files)
            .arg(&out)
            .env_remove("SOURCE_DATE_EPOCH")
            .status()
            .unwrap();
        assert!(status.success(), "package-lambda --zip-dir");
        std::fs::read(out).unwrap()
    };
    let first = zip("first.zip", "2021-03-04 05:06:07");
    let second = zip("second.zip", "2030-01-01 00:00:00");
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(first, second, "the zip depends on the files' mtimes");
    // Both entries, sorted; bootstrap is stored executable (mode 0755 in the central directory).
    let names: Vec<usize> = ["bootstrap", "rds-global-bundle.pem"]
        .iter()
        .map(|n| {
            first
                .windows(n.len())
                .position(|w| w == n.as_bytes())
                .unwrap_or_else(|| panic!("{n} is not in the zip"))
        })
        .collect();
    assert!(names[0] < names[1], "entries in name order");
    let central = first
        .windows(4)
        .position(|w| w == b"PK\x01\x02")
        .expect("a central directory");
    let external = u32::from_le_bytes(first[central + 38..central + 42].try_into().unwrap());
    assert_eq!(external >> 16, 0o100755, "bootstrap is executable");
}
