//! Card payments on AWS (terraform/payments.tf): the processor's keys in a secret only the
//! worker reads, the worker in the processor's mode, the way out to api.stripe.com, and an alarm
//! on every kind of difference the reconciliation reports.

use crate::{Stack, attr, lambda_environment, text};

const SECRET_ARN: &str = "aws_secretsmanager_secret.stripe.arn";

#[test]
fn the_worker_moves_money_through_the_processor_with_keys_only_it_reads() {
    let stack = Stack::load();
    let worker = stack.block("resource", &["aws_lambda_function", "worker"]);
    let environment = lambda_environment(&stack, worker);
    assert_eq!(
        environment["QBILL_PAYMENTS"], "\"stripe\"",
        "never the ledger mode"
    );
    assert_eq!(environment["QBILL_STRIPE_SECRET_ARN"], SECRET_ARN);
    for key in ["QBILL_STRIPE_SECRET_KEY", "QBILL_STRIPE_WEBHOOK_SECRET"] {
        assert!(
            !environment.contains_key(key),
            "{key} would put a secret in the function's configuration"
        );
    }
    for function in ["admin", "sweeper"] {
        let block = stack.block("resource", &["aws_lambda_function", function]);
        assert!(
            !lambda_environment(&stack, block).contains_key("QBILL_STRIPE_SECRET_ARN"),
            "the {function} is not told the processor's secret"
        );
        let policy = stack.block("data", &["aws_iam_policy_document", function]);
        assert!(
            policy
                .body()
                .blocks()
                .all(|s| !text(attr(s, "resources")).contains(SECRET_ARN)),
            "the {function}'s role may not read the processor's secret"
        );
    }
    let policy = stack.block("data", &["aws_iam_policy_document", "worker"]);
    assert!(
        policy
            .body()
            .blocks()
            .any(|s| text(attr(s, "resources")).contains(SECRET_ARN)
                && text(attr(s, "actions")).contains("secretsmanager:GetSecretValue")),
        "the worker reads it"
    );

    // Encrypted with the data key; its JSON is what the worker reads (processor::read_secret).
    let secret = stack.block("resource", &["aws_secretsmanager_secret", "stripe"]);
    assert_eq!(text(attr(secret, "kms_key_id")), "aws_kms_key.data.arn");
    let version = stack.block("resource", &["aws_secretsmanager_secret_version", "stripe"]);
    let json = stack.json(
        attr(version, "secret_string"),
        &[(
            "var",
            [
                ("stripe_secret_key", "sk_test_k"),
                ("stripe_webhook_secret", "whsec_new"),
                ("stripe_previous_webhook_secret", "whsec_old"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), hcl::Value::from(v)))
            .collect::<hcl::Value>(),
        )],
    );
    assert_eq!(
        json,
        serde_json::json!({ "secret_key": "sk_test_k", "webhook_secret": "whsec_new",
                            "previous_webhook_secret": "whsec_old" })
    );
    for variable in [
        "stripe_secret_key",
        "stripe_webhook_secret",
        "stripe_previous_webhook_secret",
    ] {
        assert_eq!(
            text(attr(stack.block("variable", &[variable]), "sensitive")),
            "true",
            "{variable} is sensitive: Terraform never prints it"
        );
    }
}

#[test]
fn the_worker_reaches_the_processor_through_a_nat_gateway_on_443_only() {
    let stack = Stack::load();
    let route = stack.block("resource", &["aws_route", "private_to_nat"]);
    assert_eq!(
        text(attr(route, "route_table_id")),
        "aws_route_table.private.id"
    );
    assert_eq!(
        text(attr(route, "nat_gateway_id")),
        "aws_nat_gateway.qbill.id"
    );
    let nat = stack.block("resource", &["aws_nat_gateway", "qbill"]);
    assert_eq!(text(attr(nat, "subnet_id")), "aws_subnet.public.id");
    let rule = stack.block(
        "resource",
        &["aws_security_group_rule", "worker_to_processor"],
    );
    assert_eq!(text(attr(rule, "type")), "\"egress\"");
    assert_eq!(
        text(attr(rule, "security_group_id")),
        "aws_security_group.worker.id"
    );
    assert_eq!(text(attr(rule, "from_port")), "443");
    assert_eq!(text(attr(rule, "to_port")), "443");
    assert_eq!(text(attr(rule, "protocol")), "\"tcp\"");
    // Nothing else of the stack's groups goes to the internet.
    let to_internet: Vec<String> = stack
        .blocks("resource")
        .filter(|b| b.labels()[0].as_str() == "aws_security_group_rule")
        .filter(|b| {
            b.body()
                .attributes()
                .any(|a| a.key() == "cidr_blocks" && text(&a.expr).contains("0.0.0.0/0"))
        })
        .map(|b| b.labels()[1].as_str().to_owned())
        .collect();
    assert_eq!(to_internet, ["worker_to_processor"]);
}

#[test]
fn every_kind_of_discrepancy_alarms() {
    let stack = Stack::load();
    let alarm = stack.block(
        "resource",
        &["aws_cloudwatch_metric_alarm", "payment_discrepancies"],
    );
    let kinds = text(attr(alarm, "for_each"));
    let source = std::fs::read_to_string(
        std::path::Path::new(crate::ROOT).join("workers/core/src/jobs/reconcile.rs"),
    )
    .unwrap()
        + &std::fs::read_to_string(
            std::path::Path::new(crate::ROOT).join("workers/core/src/processor/book.rs"),
        )
        .unwrap()
        + &std::fs::read_to_string(
            std::path::Path::new(crate::ROOT).join("workers/core/src/processor/refund.rs"),
        )
        .unwrap();
    for kind in [
        "amount_differs",
        "captured_after_release",
        "captured_twice",
        "captured_unknown",
        "refund_amount_differs",
        "refund_differs",
        "refund_failed_after_success",
        "refund_unknown",
        "refund_without_processor",
        "settled_without_capture",
    ] {
        assert!(kinds.contains(kind), "no alarm on {kind}");
        assert!(
            source.contains(&format!("\"{kind}\"")),
            "the code no longer reports {kind}"
        );
    }
    assert_eq!(
        text(attr(alarm, "metric_name")),
        "\"qbill_payment_discrepancies_total\""
    );
    assert_eq!(text(attr(alarm, "threshold")), "0");
    assert_eq!(text(attr(alarm, "alarm_actions")), "local.alarm_actions");
}

#[test]
fn the_worker_texts_phone_numbers_publishes_to_no_topic_and_puts_events_on_its_own_bus_only() {
    let stack = Stack::load();
    let statements = crate::documents::statements(&stack, "worker");
    let publishing: Vec<_> = statements
        .iter()
        .filter(|s| text(attr(s, "actions")).contains("sns:"))
        .collect();
    assert_eq!(publishing.len(), 2, "an allow and a deny");
    for s in &publishing {
        assert_eq!(
            crate::documents::items(s, "actions"),
            ["\"sns:Publish\""],
            "publish only, nothing else of SNS"
        );
    }
    let deny = publishing
        .iter()
        .find(|s| crate::documents::effect(s) == "Deny")
        .expect("a deny");
    assert!(
        text(attr(deny, "resources")).contains(":sns:*:*:*"),
        "every topic is denied: {}",
        text(attr(deny, "resources"))
    );
    let bus: Vec<_> = statements
        .iter()
        .filter(|s| text(attr(s, "actions")).contains("events:"))
        .collect();
    assert_eq!(bus.len(), 1);
    assert_eq!(
        crate::documents::items(bus[0], "resources"),
        ["aws_cloudwatch_event_bus.events.arn"]
    );
    let worker = stack.block("resource", &["aws_lambda_function", "worker"]);
    let environment = lambda_environment(&stack, worker);
    assert_eq!(
        environment["QBILL_EVENT_BUS"],
        "aws_cloudwatch_event_bus.events.name"
    );
}
