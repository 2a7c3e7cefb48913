//! Mail through SES: the sender the worker writes, the one identity it may send as, and the
//! endpoint it reaches SES through.

use hcl::eval::{Context, Evaluate};

use crate::{Stack, attr, counted, deployment, lambda_environment, strings, text};

#[test]
fn the_worker_mails_as_the_configured_sender_and_links_to_the_web_client() {
    let stack = Stack::load();
    let worker = stack.block("resource", &["aws_lambda_function", "worker"]);
    let environment = lambda_environment(&stack, worker);
    assert_eq!(environment["QBILL_MAIL_FROM"], "local.mail_from");
    // The web app's URL: var.web_url, or the distribution's own (web.rs).
    assert_eq!(environment["QBILL_WEB_URL"], "local.web_url");
    assert_eq!(environment["QBILL_SES_REGION"], "local.ses_region");
    assert_eq!(environment["QBILL_IDENTITY"], "var.identity");

    let names = ["region", "mail_from", "ses_region"];
    let defaults = stack.locals(&names, &stack.context_with(&deployment(&[])));
    assert_eq!(
        defaults["mail_from"],
        hcl::Value::from("qbill <billing@example.com>")
    );
    assert_eq!(
        defaults["ses_region"], defaults["region"],
        "SES defaults to the deployment's region"
    );
    let bare = stack.locals(
        &names,
        &stack.context_with(&deployment(&[
            ("mail_from_name", "".into()),
            ("ses_region", "eu-west-1".into()),
        ])),
    );
    assert_eq!(bare["mail_from"], hcl::Value::from("billing@example.com"));
    assert_eq!(bare["ses_region"], hcl::Value::from("eu-west-1"));
}

#[test]
fn the_worker_may_send_mail_as_the_stacks_ses_identity_only() {
    let stack = Stack::load();

    // One statement grants SES, the two sending actions, on the sender identity (and on the
    // sandbox's verified test recipients, none by default).
    let policy = stack.block("data", &["aws_iam_policy_document", "worker"]);
    let ses: Vec<_> = policy
        .body()
        .blocks()
        .filter(|b| b.identifier() == "statement")
        .filter(|s| text(attr(s, "actions")).contains("\"ses:"))
        .collect();
    assert_eq!(ses.len(), 1, "one statement grants SES");
    assert_eq!(
        strings(&attr(ses[0], "actions").evaluate(&Context::new()).unwrap()),
        ["ses:SendEmail", "ses:SendRawEmail"]
            .map(String::from)
            .into()
    );
    let resources = attr(ses[0], "resources");
    assert!(!text(resources).contains("\"*\""), "{}", text(resources));
    let granted = |recipients: hcl::Value| {
        let mut ctx = stack.context();
        ctx.declare_var(
            "local",
            [("mail_identity_arn", "arn:sender")]
                .into_iter()
                .collect::<hcl::Value>(),
        );
        ctx.declare_var(
            "aws_ses_email_identity",
            [("sandbox_recipient", recipients)]
                .into_iter()
                .collect::<hcl::Value>(),
        );
        strings(&resources.evaluate(&ctx).unwrap())
    };
    assert_eq!(
        granted(hcl::Value::Object(hcl::Map::new())),
        ["arn:sender".to_owned()].into()
    );
    let tester: hcl::Value = [(
        "tester@example.com",
        [("arn", "arn:tester")].into_iter().collect::<hcl::Value>(),
    )]
    .into_iter()
    .collect();
    assert_eq!(
        granted(tester),
        ["arn:sender", "arn:tester"].map(String::from).into()
    );

    // The identity is the address, or the domain (with DKIM) when mail_domain is set: exactly one.
    let identities = |mail_domain: hcl::Value| {
        let mut ctx = stack.context_with(&deployment(&[("mail_domain", mail_domain)]));
        ctx.declare_var(
            "aws_ses_email_identity",
            counted("sender", &[("arn", "arn:address")]),
        );
        ctx.declare_var(
            "aws_ses_domain_identity",
            counted("sender", &[("arn", "arn:domain")]),
        );
        let count = |kind: &str| {
            let block = stack.block("resource", &[kind, "sender"]);
            assert_eq!(text(attr(block, "provider")), "aws.ses", "{kind}");
            attr(block, "count").evaluate(&ctx).unwrap()
        };
        (
            count("aws_ses_email_identity"),
            count("aws_ses_domain_identity"),
            count("aws_ses_domain_dkim"),
            stack.locals(&["mail_identity_arn"], &ctx)["mail_identity_arn"].clone(),
        )
    };
    assert_eq!(
        identities(hcl::Value::Null),
        (1.into(), 0.into(), 0.into(), "arn:address".into())
    );
    assert_eq!(
        identities("example.com".into()),
        (0.into(), 1.into(), 1.into(), "arn:domain".into())
    );
    let address = stack.block("resource", &["aws_ses_email_identity", "sender"]);
    assert_eq!(text(attr(address, "email")), "var.mail_from_address");
    let ses_provider = stack
        .blocks("provider")
        .find(|p| {
            p.body()
                .attributes()
                .any(|a| a.key() == "alias" && text(a.expr()) == "\"ses\"")
        })
        .expect("a provider aws.ses");
    assert_eq!(
        text(attr(ses_provider, "region")),
        "coalesce(var.ses_region, var.aws_region)"
    );

    // The worker, in private subnets without a route out, reaches the SES API through an
    // interface endpoint ("email", not "email-smtp") when it mails in the stack's region.
    let endpoints = stack.block("resource", &["aws_vpc_endpoint", "interface"]);
    assert_eq!(
        text(attr(endpoints, "for_each")),
        "toset(local.interface_endpoint_services)"
    );
    assert_eq!(
        text(attr(endpoints, "service_name")),
        "\"com.amazonaws.${local.region}.${each.key}\""
    );
    let services = |set: &[(&'static str, hcl::Value)]| {
        let names = [
            "region",
            "cognito",
            "ses_region",
            "interface_endpoint_services",
        ];
        strings(
            &stack.locals(&names, &stack.context_with(&deployment(set)))["interface_endpoint_services"],
        )
    };
    assert_eq!(
        services(&[]),
        ["sqs", "secretsmanager", "email"].map(String::from).into()
    );
    assert!(!services(&[("ses_region", "us-east-1".into())]).contains("email"));

    for output in ["mail_identity", "mail_identity_arn", "mail_dns_records"] {
        stack.block("output", &[output]);
    }
    assert_eq!(
        text(attr(stack.block("output", &["mail_identity_arn"]), "value")),
        "local.mail_identity_arn"
    );
}
