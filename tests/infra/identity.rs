//! The identity switch: with Cognito the pool and its client exist, the worker learns the issuer
//! and the client, and the gateway has no /auth* routes.

use std::collections::BTreeSet;
use std::path::Path;

use hcl::Block;
use hcl::eval::{Context, Evaluate};

use crate::{ROOT, Stack, attr, counted, deployment, lambda_environment, strings, text};

/// The path keys of gateway-config/openapi.yaml (two spaces in, under `paths:`).
fn gateway_paths() -> BTreeSet<String> {
    let yaml =
        std::fs::read_to_string(Path::new(ROOT).join("gateway-config/openapi.yaml")).unwrap();
    yaml.lines()
        .skip_while(|line| *line != "paths:")
        .skip(1)
        .take_while(|line| line.is_empty() || line.starts_with(' ') || line.starts_with('#'))
        .filter_map(|line| line.strip_prefix("  /"))
        .map(|rest| format!("/{}", rest.trim_end().strip_suffix(':').unwrap()))
        .collect()
}

#[test]
fn with_cognito_the_auth_routes_are_not_deployed_and_every_other_route_is() {
    let stack = Stack::load();
    let all = gateway_paths();
    assert!(
        all.contains("/auth") && all.contains("/replies/{queue_name}"),
        "{all:?}"
    );
    let info: hcl::Value = [("title", "from the template"), ("version", "1.0")]
        .into_iter()
        .collect();
    let document: hcl::Value = [
        ("openapi", hcl::Value::from("3.0.1")),
        ("info", info),
        (
            "paths",
            all.iter()
                .map(|p| (p.clone(), hcl::Value::Object(hcl::Map::new())))
                .collect(),
        ),
        ("components", [("schemas", "kept")].into_iter().collect()),
    ]
    .into_iter()
    .collect();

    for identity in ["builtin", "cognito"] {
        let mut ctx = stack.context_with(&deployment(&[("identity", identity.into())]));
        let cognito = stack.locals(&["cognito"], &ctx)["cognito"].clone();
        ctx.declare_var(
            "local",
            [("openapi_document", document.clone()), ("cognito", cognito)]
                .into_iter()
                .collect::<hcl::Value>(),
        );
        let paths = stack.local("openapi_paths").evaluate(&ctx).unwrap();
        let deployed: BTreeSet<String> = paths.as_object().unwrap().keys().cloned().collect();
        let expected: BTreeSet<String> = match identity {
            "builtin" => all.clone(),
            _ => all
                .iter()
                .filter(|p| !p.starts_with("/auth"))
                .cloned()
                .collect(),
        };
        assert_eq!(deployed, expected, "identity = {identity}");

        // Only the paths and the title change: the rest of the document (schemas, validators) is
        // deployed as is. The title and description are the API resource's name and description,
        // which a put of the definition sets.
        let body = stack.json(
            stack.local("openapi_body"),
            &[(
                "local",
                [
                    ("openapi_document", document.clone()),
                    ("openapi_paths", paths),
                    ("api_description", "the API's description".into()),
                ]
                .into_iter()
                .collect(),
            )],
        );
        assert_eq!(body["components"], serde_json::json!({ "schemas": "kept" }));
        assert_eq!(
            body["info"],
            serde_json::json!({ "title": "qbill", "version": "1.0", "description": "the API's description" })
        );
        let api = stack.block("resource", &["aws_api_gateway_rest_api", "qbill"]);
        assert_eq!(text(attr(api, "name")), "var.name");
        assert_eq!(text(attr(api, "description")), "local.api_description");
        assert_eq!(
            body["paths"].as_object().unwrap().len(),
            expected.len(),
            "identity = {identity}"
        );
    }
}

#[test]
fn the_cognito_pool_and_its_public_client_exist_only_with_the_cognito_identity() {
    let stack = Stack::load();
    assert_eq!(text(stack.local("cognito")), "var.identity == \"cognito\"");
    let cognito_resources: Vec<_> = stack
        .blocks("resource")
        .filter(|b| b.labels()[0].as_str().starts_with("aws_cognito_"))
        .collect();
    let kinds: BTreeSet<_> = cognito_resources
        .iter()
        .map(|b| b.labels()[0].as_str())
        .collect();
    assert_eq!(
        kinds,
        ["aws_cognito_user_pool", "aws_cognito_user_pool_client"].into(),
        "a pool and its client; no domain (a pool with one cannot be reached through the VPC endpoint)"
    );
    for identity in ["builtin", "cognito"] {
        let ctx = stack.context_with(&deployment(&[("identity", identity.into())]));
        let mut ctx_with_local = ctx.clone();
        ctx_with_local.declare_var(
            "local",
            hcl::Value::Object(stack.locals(&["cognito"], &ctx)),
        );
        for resource in &cognito_resources {
            let count = attr(resource, "count").evaluate(&ctx_with_local).unwrap();
            let expected = if identity == "cognito" { 1 } else { 0 };
            assert_eq!(
                count,
                expected.into(),
                "{:?} with {identity}",
                resource.labels()
            );
        }
    }

    // The pool: the address is the username, verified by the pool, and recovers the account.
    let pool = stack.block("resource", &["aws_cognito_user_pool", "qbill"]);
    let list = |block: &Block, key| strings(&attr(block, key).evaluate(&Context::new()).unwrap());
    assert_eq!(
        list(pool, "username_attributes"),
        ["email".to_owned()].into()
    );
    assert_eq!(
        list(pool, "auto_verified_attributes"),
        ["email".to_owned()].into()
    );
    let nested = |block: &'_ Block, name: &str| -> Block {
        block
            .body()
            .blocks()
            .find(|b| b.identifier() == name)
            .unwrap_or_else(|| panic!("no {name} block"))
            .clone()
    };
    let minimum: u32 = text(attr(&nested(pool, "password_policy"), "minimum_length"))
        .parse()
        .unwrap();
    assert!(
        minimum >= 12,
        "passwords of at least 12 characters: {minimum}"
    );
    let recovery = nested(
        &nested(pool, "account_recovery_setting"),
        "recovery_mechanism",
    );
    assert_eq!(text(attr(&recovery, "name")), "\"verified_email\"");

    // The client: public (no secret), SRP sign-in and refresh tokens only.
    let client = stack.block("resource", &["aws_cognito_user_pool_client", "web"]);
    assert_eq!(
        text(attr(client, "user_pool_id")),
        "aws_cognito_user_pool.qbill[0].id"
    );
    assert_eq!(text(attr(client, "generate_secret")), "false");
    assert_eq!(
        list(client, "explicit_auth_flows"),
        ["ALLOW_USER_SRP_AUTH", "ALLOW_REFRESH_TOKEN_AUTH"]
            .map(String::from)
            .into()
    );

    // The worker learns the issuer and the client id with cognito, and nothing without.
    let names = [
        "region",
        "cognito",
        "ses_region",
        "interface_endpoint_services",
        "cognito_issuer",
        "worker_cognito_environment",
    ];
    let builtin = stack.locals(&names, &stack.context_with(&deployment(&[])));
    assert_eq!(
        builtin["worker_cognito_environment"],
        hcl::Value::Object(hcl::Map::new())
    );
    assert!(!strings(&builtin["interface_endpoint_services"]).contains("cognito-idp"));
    let mut ctx = stack.context_with(&deployment(&[("identity", "cognito".into())]));
    ctx.declare_var(
        "aws_cognito_user_pool",
        counted(
            "qbill",
            &[(
                "endpoint",
                "cognito-idp.eu-central-1.amazonaws.com/eu-central-1_Example",
            )],
        ),
    );
    ctx.declare_var(
        "aws_cognito_user_pool_client",
        counted("web", &[("id", "example-client")]),
    );
    let cognito = stack.locals(&names, &ctx);
    assert_eq!(
        serde_json::to_value(&cognito["worker_cognito_environment"]).unwrap(),
        serde_json::json!({
            "QBILL_COGNITO_ISSUER": "https://cognito-idp.eu-central-1.amazonaws.com/eu-central-1_Example",
            "QBILL_COGNITO_CLIENT_ID": "example-client",
        })
    );
    // It fetches the pool's JWKS through the cognito-idp endpoint: the subnets have no way out.
    assert!(strings(&cognito["interface_endpoint_services"]).contains("cognito-idp"));
    let worker = stack.block("resource", &["aws_lambda_function", "worker"]);
    let environment = lambda_environment(&stack, worker);
    assert_eq!(environment["QBILL_COGNITO_ISSUER"], "local.cognito_issuer");

    for output in [
        "cognito_user_pool_id",
        "cognito_user_pool_client_id",
        "cognito_issuer",
    ] {
        stack.block("output", &[output]);
    }
}

/// The pool's `email_configuration` evaluated with `cognito_mail_through_ses` set as given.
fn pool_mail(stack: &Stack, through_ses: Option<bool>) -> hcl::Map<String, hcl::Value> {
    let pool = stack.block("resource", &["aws_cognito_user_pool", "qbill"]);
    let email = pool
        .body()
        .blocks()
        .find(|b| b.identifier() == "email_configuration")
        .expect("an email_configuration block");
    let mut set = deployment(&[("identity", "cognito".into())]);
    if let Some(through_ses) = through_ses {
        set.push(("cognito_mail_through_ses", through_ses.into()));
    }
    let mut ctx = stack.context_with(&set);
    ctx.declare_var(
        "local",
        [
            (
                "mail_identity_arn",
                "arn:aws:ses:eu-central-1:123456789012:identity/billing@example.com",
            ),
            ("mail_from", "qbill <billing@example.com>"),
        ]
        .into_iter()
        .collect::<hcl::Value>(),
    );
    email
        .body()
        .attributes()
        .map(|a| {
            let value = a.expr().evaluate(&ctx).unwrap_or_else(|e| {
                panic!("email_configuration.{} does not evaluate: {e}", a.key())
            });
            (a.key().to_owned(), value)
        })
        .collect()
}

#[test]
fn the_pool_mails_through_cognito_until_the_ses_identity_is_verified_so_one_apply_works() {
    let stack = Stack::load();
    // The SES identity is created in the same apply, unverified; a pool that names it as its
    // sender cannot be created until it is verified. So the pool starts on Cognito's own sender.
    let variable = stack.block("variable", &["cognito_mail_through_ses"]);
    assert_eq!(text(attr(variable, "type")), "bool");
    assert_eq!(text(attr(variable, "default")), "false", "off by default");

    let first = pool_mail(&stack, None);
    assert_eq!(
        first["email_sending_account"],
        hcl::Value::from("COGNITO_DEFAULT"),
        "{first:?}"
    );
    for key in ["source_arn", "from_email_address"] {
        assert_eq!(
            first.get(key).cloned().unwrap_or(hcl::Value::Null),
            hcl::Value::Null,
            "Cognito's own sender names no SES identity: {first:?}"
        );
    }

    // Once the identity is verified, one variable moves the pool to the stack's SES identity.
    let then = pool_mail(&stack, Some(true));
    assert_eq!(
        then["email_sending_account"],
        hcl::Value::from("DEVELOPER"),
        "{then:?}"
    );
    assert_eq!(
        then["source_arn"],
        hcl::Value::from("arn:aws:ses:eu-central-1:123456789012:identity/billing@example.com")
    );
    assert_eq!(
        then["from_email_address"],
        hcl::Value::from("qbill <billing@example.com>")
    );

    // A plan says when the pool is still on Cognito's sender, and the README gives both steps.
    let check = stack.block("check", &["cognito_mail_through_ses"]);
    let condition = text(attr(
        check
            .body()
            .blocks()
            .find(|b| b.identifier() == "assert")
            .expect("an assert"),
        "condition",
    ));
    assert!(
        condition.contains("var.cognito_mail_through_ses") && condition.contains("local.cognito"),
        "{condition}"
    );
    let readme = std::fs::read_to_string(Path::new(ROOT).join("terraform/README.md")).unwrap();
    let section = readme
        .split("## Identity: built-in or Cognito")
        .nth(1)
        .and_then(|rest| rest.split("\n## ").next())
        .expect("the identity section");
    assert!(
        section.contains("cognito_mail_through_ses = true") && section.contains("COGNITO_DEFAULT"),
        "the README gives the two steps: {section}"
    );
}

#[test]
fn the_stacks_web_app_cannot_sign_in_with_cognito_so_the_combination_is_refused() {
    let stack = Stack::load();
    // The web app signs in through /auth* only, which Cognito removes, and its CSP does not admit
    // the pool: with Cognito the client at web_url must be another one, served elsewhere.
    let pool = stack.block("resource", &["aws_cognito_user_pool", "qbill"]);
    let lifecycle = pool
        .body()
        .blocks()
        .find(|b| b.identifier() == "lifecycle")
        .expect("a lifecycle block");
    let guards: Vec<_> = lifecycle
        .body()
        .blocks()
        .filter(|b| b.identifier() == "precondition")
        .collect();
    let refuses = |set: &[(&'static str, hcl::Value)]| -> bool {
        let mut vars = vec![
            ("mail_from_address", hcl::Value::from("billing@example.com")),
            ("identity", hcl::Value::from("cognito")),
        ];
        vars.extend(set.iter().cloned());
        let ctx = stack.context_with(&vars);
        guards.iter().any(|g| {
            attr(g, "condition")
                .evaluate(&ctx)
                .unwrap_or_else(|e| panic!("{} does not evaluate: {e}", text(attr(g, "condition"))))
                == hcl::Value::Bool(false)
        })
    };
    assert!(refuses(&[]), "the stack's app at its cloudfront.net name");
    assert!(
        refuses(&[
            ("web_url", "https://billing.example.com".into()),
            (
                "web_certificate_arn",
                "arn:aws:acm:us-east-1:123456789012:certificate/abc".into()
            ),
        ]),
        "the stack's app at a domain of the operator's"
    );
    assert!(
        !refuses(&[("web_url", "https://app.example.com".into())]),
        "a client of the operator's, served elsewhere, is admitted"
    );
    let message = guards
        .iter()
        .map(|g| text(attr(g, "error_message")))
        .collect::<String>();
    assert!(message.contains("web_url"), "{message}");

    let readme = std::fs::read_to_string(Path::new(ROOT).join("terraform/README.md")).unwrap();
    let section = readme
        .split("## Identity: built-in or Cognito")
        .nth(1)
        .and_then(|rest| rest.split("\n## ").next())
        .expect("the identity section");
    assert!(
        section.contains("refuses") && section.contains("web app"),
        "the README says the stack's web app and Cognito are refused together: {section}"
    );
}
