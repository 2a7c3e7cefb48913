//! One package, three functions (the issue 13 contract): the internet-facing worker, the admin
//! function an operator invokes, and the reply-queue sweeper. Each gets the environment the
//! contract lists and a role that grants what it does and nothing of the others' work.

use std::collections::BTreeSet;

use hcl::Block;
use hcl::eval::{Context, Evaluate};

use crate::{Stack, attr, lambda_environment, strings, text};

fn environment_keys(stack: &Stack, function: &str) -> BTreeSet<String> {
    let block = stack.block("resource", &["aws_lambda_function", function]);
    lambda_environment(stack, block).into_keys().collect()
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|n| n.to_string()).collect()
}

/// The statements of a role's policy document, with their actions (literal lists).
fn statements<'a>(stack: &'a Stack, name: &str) -> Vec<(&'a Block, BTreeSet<String>)> {
    stack
        .block("data", &["aws_iam_policy_document", name])
        .body()
        .blocks()
        .filter(|b| b.identifier() == "statement")
        .map(|s| {
            let actions = strings(&attr(s, "actions").evaluate(&Context::new()).unwrap());
            (s, actions)
        })
        .collect()
}

/// Every action the role's policy grants on a resource whose expression's text is `resource`
/// (or contains it).
fn actions_on(stack: &Stack, policy: &str, resource: &str) -> BTreeSet<String> {
    statements(stack, policy)
        .into_iter()
        .filter(|(s, _)| text(attr(s, "resources")).contains(resource))
        .flat_map(|(_, actions)| actions)
        .collect()
}

fn all_actions(stack: &Stack, policy: &str) -> BTreeSet<String> {
    statements(stack, policy)
        .into_iter()
        .flat_map(|(_, actions)| actions)
        .collect()
}

#[test]
fn each_function_gets_the_environment_the_contract_lists() {
    let stack = Stack::load();
    let worker = environment_keys(&stack, "worker");
    for added in [
        "QBILL_FUNCTION",
        "QBILL_REPLY_QUEUE_ARN_PREFIX",
        "QBILL_METRICS_NAMESPACE",
        "QBILL_MAX_RECEIVES",
    ] {
        assert!(worker.contains(added), "the worker is given {added}");
    }
    for removed in [
        "QBILL_DATABASE_MASTER_SECRET_ARN",
        "QBILL_OPERATOR_SECRET_ARN",
    ] {
        assert!(
            !worker.contains(removed),
            "the worker is not given {removed}"
        );
    }
    assert_eq!(
        environment_keys(&stack, "admin"),
        set(&[
            "QBILL_FUNCTION",
            "QBILL_DATABASE_AUTH",
            "QBILL_DATABASE_HOST",
            "QBILL_DATABASE_PORT",
            "QBILL_DATABASE_NAME",
            "QBILL_DATABASE_USER",
            "QBILL_DATABASE_CA_BUNDLE",
            "QBILL_DATABASE_PASSWORD_SECRET_ARN",
            "QBILL_DATABASE_MASTER_SECRET_ARN",
            "QBILL_OPERATOR_SECRET_ARN",
        ])
    );
    assert_eq!(
        environment_keys(&stack, "sweeper"),
        set(&[
            "QBILL_FUNCTION",
            "QBILL_REPLY_QUEUE_PREFIX",
            "QBILL_REPLY_RETENTION_SECONDS",
            "QBILL_REPLY_IDLE_SECONDS",
            "QBILL_SWEEP_QUEUE",
            "REDIS_URL",
            "QBILL_REDIS_AUTH_SECRET_ARN",
            "QBILL_METRICS_NAMESPACE",
        ])
    );

    // The values the contract names.
    let env = |function: &str| {
        lambda_environment(
            &stack,
            stack.block("resource", &["aws_lambda_function", function]),
        )
    };
    let worker = env("worker");
    assert_eq!(
        worker["QBILL_REPLY_QUEUE_ARN_PREFIX"],
        "local.reply_queue_arn_prefix"
    );
    assert_eq!(worker["QBILL_METRICS_NAMESPACE"], "var.name");
    assert_eq!(
        worker["QBILL_MAX_RECEIVES"],
        "tostring(var.max_receive_count)"
    );
    let requests = stack.block("resource", &["aws_sqs_queue", "requests"]);
    assert!(
        text(attr(requests, "redrive_policy")).contains("maxReceiveCount = var.max_receive_count"),
        "QBILL_MAX_RECEIVES is the request queue's maxReceiveCount"
    );
    assert_eq!(
        text(stack.local("reply_queue_arn_prefix")),
        "\"arn:${local.partition}:sqs:${local.region}:${local.account_id}:${local.reply_queue_prefix}\""
    );
    let admin = env("admin");
    assert_eq!(
        admin["QBILL_DATABASE_MASTER_SECRET_ARN"],
        "aws_db_instance.qbill.master_user_secret[0].secret_arn"
    );
    assert_eq!(
        admin["QBILL_DATABASE_HOST"], worker["QBILL_DATABASE_HOST"],
        "the admin function connects where the worker does (the proxy has the master secret too)"
    );
    let sweeper = env("sweeper");
    assert_eq!(sweeper["QBILL_SWEEP_QUEUE"], "aws_sqs_queue.sweep.url");
    assert_eq!(sweeper["REDIS_URL"], worker["REDIS_URL"]);
    assert_eq!(
        sweeper["QBILL_REPLY_QUEUE_PREFIX"],
        worker["QBILL_REPLY_QUEUE_PREFIX"]
    );

    // One package: the same zip, runtime and architecture.
    for function in ["admin", "sweeper"] {
        let block = stack.block("resource", &["aws_lambda_function", function]);
        let worker = stack.block("resource", &["aws_lambda_function", "worker"]);
        for key in [
            "runtime",
            "handler",
            "filename",
            "source_code_hash",
            "architectures",
            "kms_key_arn",
        ] {
            assert_eq!(
                text(attr(block, key)),
                text(attr(worker, key)),
                "{function}'s {key}"
            );
        }
    }
}

#[test]
fn the_worker_role_holds_neither_the_master_secret_nor_the_operator_nor_the_sweep() {
    let stack = Stack::load();
    let worker = all_actions(&stack, "worker");
    for action in [
        "sqs:ListQueues",
        "sqs:DeleteQueue",
        "sqs:ListQueueTags",
        "sqs:TagQueue",
    ] {
        assert!(!worker.contains(action), "the worker may not {action}");
    }
    assert_eq!(
        actions_on(&stack, "worker", "local.reply_queue_arn_pattern"),
        set(&["sqs:CreateQueue", "sqs:SendMessage", "sqs:GetQueueUrl"]),
        "on reply queues the worker creates and answers, nothing more (no tagging call)"
    );
    for secret in [
        "master_user_secret",
        "aws_secretsmanager_secret.first_operator",
    ] {
        assert!(
            actions_on(&stack, "worker", secret).is_empty(),
            "the worker may not read {secret}"
        );
    }
    // What it keeps: consuming the request queue, its own secrets, the database login, SES, S3.
    assert!(
        actions_on(&stack, "worker", "aws_sqs_queue.requests.arn").contains("sqs:ReceiveMessage")
    );
    for secret in ["jwt", "redis_auth", "database_password"] {
        assert!(
            actions_on(
                &stack,
                "worker",
                &format!("aws_secretsmanager_secret.{secret}.arn")
            )
            .contains("secretsmanager:GetSecretValue"),
            "the worker reads {secret}"
        );
    }
    assert!(worker.contains("rds-db:connect") && worker.contains("ses:SendEmail"));
}

#[test]
fn the_admin_function_reads_its_three_secrets_and_touches_no_queue_mail_or_bucket() {
    let stack = Stack::load();
    let admin = all_actions(&stack, "admin");
    let services: BTreeSet<_> = admin
        .iter()
        .map(|a| a.split(':').next().unwrap().to_owned())
        .collect();
    assert_eq!(
        services,
        set(&["logs", "ec2", "xray", "secretsmanager", "kms"])
    );
    let reading: Vec<_> = statements(&stack, "admin")
        .into_iter()
        .filter(|(_, actions)| actions.contains("secretsmanager:GetSecretValue"))
        .collect();
    assert_eq!(reading.len(), 1);
    let resources: BTreeSet<String> = match attr(reading[0].0, "resources") {
        hcl::Expression::Array(items) => items.iter().map(text).collect(),
        other => panic!("not a list: {}", text(other)),
    };
    assert_eq!(
        resources,
        set(&[
            "aws_db_instance.qbill.master_user_secret[0].secret_arn",
            "aws_secretsmanager_secret.first_operator.arn",
            "aws_secretsmanager_secret.database_password.arn",
        ])
    );
    let function = stack.block("resource", &["aws_lambda_function", "admin"]);
    assert_eq!(text(attr(function, "role")), "aws_iam_role.admin.arn");
    let vpc = function
        .body()
        .blocks()
        .find(|b| b.identifier() == "vpc_config")
        .expect("in the VPC");
    assert_eq!(
        text(attr(vpc, "security_group_ids"))
            .split_whitespace()
            .collect::<String>(),
        "[aws_security_group.admin.id]"
    );
    // No event source and no schedule reach it.
    assert!(
        !stack.blocks("resource").any(|b| {
            [
                "aws_lambda_event_source_mapping",
                "aws_cloudwatch_event_target",
            ]
            .contains(&b.labels()[0].as_str())
                && ["function_name", "arn"].iter().any(|key| {
                    b.body().attributes().any(|a| {
                        a.key() == *key && text(a.expr()).starts_with("aws_lambda_function.admin.")
                    })
                })
        }),
        "nothing but an operator invokes the admin function"
    );
    // Its network: PostgreSQL (or the proxy) and the endpoints, nothing else.
    let egress: BTreeSet<String> = stack
        .blocks("resource")
        .filter(|b| b.labels()[0].as_str() == "aws_security_group_rule")
        .filter(|b| text(attr(b, "type")) == "\"egress\"")
        .filter(|b| {
            let group = text(attr(b, "security_group_id"));
            group == "aws_security_group.admin.id" || group == "each.value"
        })
        .map(|b| text(attr(b, "from_port")))
        .collect();
    assert_eq!(egress, set(&["5432", "443"]));
}

#[test]
fn the_sweeper_lists_examines_and_deletes_reply_queues_through_its_own_queue() {
    let stack = Stack::load();
    assert_eq!(
        actions_on(&stack, "sweeper", "local.account_queues_arn"),
        set(&["sqs:ListQueues"])
    );
    assert_eq!(
        actions_on(&stack, "sweeper", "local.reply_queue_arn_pattern"),
        set(&["sqs:GetQueueAttributes", "sqs:DeleteQueue"])
    );
    assert_eq!(
        actions_on(&stack, "sweeper", "aws_sqs_queue.sweep.arn"),
        set(&[
            "sqs:SendMessage",
            "sqs:ReceiveMessage",
            "sqs:DeleteMessage",
            "sqs:GetQueueAttributes",
            "sqs:ChangeMessageVisibility",
        ])
    );
    assert_eq!(
        actions_on(&stack, "sweeper", "aws_secretsmanager_secret."),
        set(&["secretsmanager:GetSecretValue"])
    );
    assert!(
        text(attr(
            statements(&stack, "sweeper")
                .into_iter()
                .find(|(_, a)| a.contains("secretsmanager:GetSecretValue"))
                .unwrap()
                .0,
            "resources"
        ))
        .split_whitespace()
        .collect::<String>()
            == "[aws_secretsmanager_secret.redis_auth.arn]",
        "the Redis AUTH token only"
    );
    let services: BTreeSet<_> = all_actions(&stack, "sweeper")
        .iter()
        .map(|a| a.split(':').next().unwrap().to_owned())
        .collect();
    assert_eq!(
        services,
        set(&["logs", "ec2", "xray", "sqs", "secretsmanager", "kms"])
    );

    // The sweep queue: the stack's SQS key, six sweeper timeouts of visibility, a DLQ after 3.
    let sweep = stack.block("resource", &["aws_sqs_queue", "sweep"]);
    assert_eq!(text(attr(sweep, "name")), "local.sweep_queue_name");
    assert_eq!(
        stack.evaluate(stack.local("sweep_queue_name")),
        "qbill-sweep"
    );
    assert_eq!(
        stack.evaluate(stack.local("sweep_dlq_name")),
        "qbill-sweep-dlq"
    );
    assert_eq!(
        text(attr(sweep, "kms_master_key_id")),
        "aws_kms_key.sqs.arn"
    );
    assert_eq!(
        text(attr(sweep, "visibility_timeout_seconds")),
        "6 * var.sweeper_timeout_seconds"
    );
    let sweeper = stack.block("resource", &["aws_lambda_function", "sweeper"]);
    assert_eq!(
        text(attr(sweeper, "timeout")),
        "var.sweeper_timeout_seconds"
    );
    let dlq: hcl::Value = [("arn", "arn:sweep-dlq")].into_iter().collect();
    let queues: hcl::Value = [("sweep_dlq", dlq)].into_iter().collect();
    assert_eq!(
        stack.json(attr(sweep, "redrive_policy"), &[("aws_sqs_queue", queues)]),
        serde_json::json!({ "deadLetterTargetArn": "arn:sweep-dlq", "maxReceiveCount": 3 })
    );

    // Its event source mapping: a task per invocation, failed items reported, bounded.
    let mapping = stack.block("resource", &["aws_lambda_event_source_mapping", "sweep"]);
    assert_eq!(
        text(attr(mapping, "event_source_arn")),
        "aws_sqs_queue.sweep.arn"
    );
    assert_eq!(
        text(attr(mapping, "function_name")),
        "aws_lambda_function.sweeper.arn"
    );
    assert_eq!(text(attr(mapping, "batch_size")), "1");
    assert_eq!(
        attr(mapping, "function_response_types")
            .evaluate(&Context::new())
            .unwrap(),
        hcl::Value::from(vec!["ReportBatchItemFailures"])
    );
    let scaling = mapping
        .body()
        .blocks()
        .find(|b| b.identifier() == "scaling_config")
        .expect("scaling_config");
    assert_eq!(
        text(attr(scaling, "maximum_concurrency")),
        "var.sweep_max_concurrency"
    );
    let variable = stack.block("variable", &["sweep_max_concurrency"]);
    assert_eq!(text(attr(variable, "default")), "4");
    let validation = variable
        .body()
        .blocks()
        .find(|b| b.identifier() == "validation")
        .unwrap();
    assert!(text(attr(validation, "condition")).contains("var.sweep_max_concurrency >= 2"));

    // Alarms on its errors and on the sweep DLQ, to the alarm topic.
    for (alarm, dimension) in [
        (
            "sweeper_errors",
            "aws_lambda_function.sweeper.function_name",
        ),
        ("sweep_dlq_not_empty", "aws_sqs_queue.sweep_dlq.name"),
    ] {
        let alarm = stack.block("resource", &["aws_cloudwatch_metric_alarm", alarm]);
        assert!(text(attr(alarm, "dimensions")).contains(dimension));
        assert_eq!(text(attr(alarm, "alarm_actions")), "local.alarm_actions");
        assert_eq!(text(attr(alarm, "threshold")), "0");
    }
}

#[test]
fn every_function_logs_json_lines_at_a_level_the_bootstrap_reads_and_the_metrics_survive() {
    let stack = Stack::load();
    let local = |expr: &hcl::Expression| {
        let name = text(expr);
        let name = name
            .strip_prefix("local.")
            .unwrap_or_else(|| panic!("{name} is not a local"));
        stack.evaluate(stack.local(name))
    };
    for function in ["worker", "admin", "sweeper"] {
        let block = stack.block("resource", &["aws_lambda_function", function]);
        let logging = block
            .body()
            .blocks()
            .find(|b| b.identifier() == "logging_config")
            .unwrap_or_else(|| panic!("the {function} function has no logging_config"));
        assert_eq!(local(attr(logging, "log_format")), "JSON", "{function}");
        assert_eq!(
            text(attr(logging, "log_group")),
            format!("local.{function}_log_group"),
            "{function} logs where its log group (retention, key) is"
        );
        let level = local(attr(logging, "application_log_level"));
        assert!(
            qbill_lambda::logging::level(&level).is_some(),
            "{function}: the bootstrap reads {level:?} as AWS_LAMBDA_LOG_LEVEL"
        );
        // The embedded-metric-format lines carry no level and count as INFO: a quieter level
        // would drop the metrics.
        assert!(
            ["TRACE", "DEBUG", "INFO"].contains(&level.as_str()),
            "{function}: {level} drops the metrics"
        );
        assert_eq!(
            local(attr(logging, "system_log_level")),
            "INFO",
            "{function}"
        );
    }
}
