//! The household web app on AWS: a private bucket that only the CloudFront distribution reads
//! (Origin Access Control, `AWS:SourceArn`), HTTPS only, the SPA's routes answered with
//! `index.html`, security headers on every response, `config.json` naming the gateway, and the
//! API allowing the app's one origin (never `*`), which is also what mails link to.

use std::collections::{BTreeMap, BTreeSet};

use hcl::Block;

use crate::documents::{
    Condition, condition, conditions, effect, items, literal, nested, statements,
};
use crate::{Stack, attr, deployment, lambda_environment, strings, text};

/// The blocks `kind` of `block`, however many.
fn all<'a>(block: &'a Block, kind: &str) -> Vec<&'a Block> {
    block
        .body()
        .blocks()
        .filter(|b| b.identifier() == kind)
        .collect()
}

/// `{ type: { name: { key: value } } }`, as `type.name.key` sees a resource's attribute.
fn resource(kind: &str, name: &str, attributes: &[(&str, &str)]) -> (String, hcl::Value) {
    let instance: hcl::Value = attributes.iter().map(|(k, v)| (*k, *v)).collect();
    (
        kind.to_owned(),
        [(name, instance)].into_iter().collect::<hcl::Value>(),
    )
}

#[test]
fn the_web_bucket_is_private_versioned_encrypted_and_read_by_the_distribution_only() {
    let stack = Stack::load();

    // One bucket per stack, account and region (bucket names are global).
    let bucket = stack.block("resource", &["aws_s3_bucket", "web"]);
    assert_eq!(text(attr(bucket, "bucket")), "local.web_bucket_name");
    let ctx = stack.context_in_account("123456789012");
    assert_eq!(
        stack.locals(&["region", "account_id", "web_bucket_name"], &ctx)["web_bucket_name"],
        hcl::Value::from("qbill-web-123456789012-eu-central-1")
    );

    for kind in [
        "aws_s3_bucket_public_access_block",
        "aws_s3_bucket_ownership_controls",
        "aws_s3_bucket_server_side_encryption_configuration",
        "aws_s3_bucket_versioning",
        "aws_s3_bucket_lifecycle_configuration",
        "aws_s3_bucket_policy",
    ] {
        let setting = stack.block("resource", &[kind, "web"]);
        assert_eq!(text(attr(setting, "bucket")), "aws_s3_bucket.web.id");
    }

    // Not public: all four blocks on, ACLs disabled.
    let public = stack.block("resource", &["aws_s3_bucket_public_access_block", "web"]);
    for key in [
        "block_public_acls",
        "block_public_policy",
        "ignore_public_acls",
        "restrict_public_buckets",
    ] {
        assert_eq!(literal(public, key), hcl::Value::Bool(true), "{key}");
    }
    let ownership = stack.block("resource", &["aws_s3_bucket_ownership_controls", "web"]);
    assert_eq!(
        literal(nested(ownership, "rule"), "object_ownership"),
        hcl::Value::from("BucketOwnerEnforced")
    );

    // Encrypted at rest (SSE-S3 or KMS) and versioned.
    let encryption = stack.block(
        "resource",
        &["aws_s3_bucket_server_side_encryption_configuration", "web"],
    );
    let algorithm = literal(
        nested(
            nested(encryption, "rule"),
            "apply_server_side_encryption_by_default",
        ),
        "sse_algorithm",
    );
    assert!(
        ["AES256", "aws:kms"]
            .map(hcl::Value::from)
            .contains(&algorithm),
        "{algorithm:?}"
    );
    let versioning = stack.block("resource", &["aws_s3_bucket_versioning", "web"]);
    assert_eq!(
        literal(nested(versioning, "versioning_configuration"), "status"),
        hcl::Value::from("Enabled")
    );

    // The policy allows one thing: the cloudfront.amazonaws.com service reading objects on
    // behalf of this distribution. It refuses every request without TLS.
    let policy = stack.block("resource", &["aws_s3_bucket_policy", "web"]);
    assert_eq!(
        text(attr(policy, "policy")),
        "data.aws_iam_policy_document.web_bucket.json"
    );
    let bucket_statements = statements(&stack, "web_bucket");
    let allows: Vec<_> = bucket_statements
        .iter()
        .filter(|s| effect(s) == "Allow")
        .collect();
    assert_eq!(allows.len(), 1, "one statement grants anything");
    let allow = allows[0];
    assert_eq!(
        strings(&literal(allow, "actions")),
        ["s3:GetObject".into()].into(),
        "read only, and no listing"
    );
    assert_eq!(
        items(allow, "resources"),
        ["\"${aws_s3_bucket.web.arn}/*\""],
        "the objects, not the bucket"
    );
    let principals = all(allow, "principals");
    assert_eq!(principals.len(), 1);
    assert_eq!(literal(principals[0], "type"), hcl::Value::from("Service"));
    assert_eq!(
        strings(&literal(principals[0], "identifiers")),
        ["cloudfront.amazonaws.com".into()].into()
    );
    let expected: BTreeSet<Condition> = [condition(
        "StringEquals",
        "AWS:SourceArn",
        &["aws_cloudfront_distribution.web.arn"],
    )]
    .into();
    assert_eq!(conditions(allow), expected, "this distribution only");

    let tls: Vec<_> = bucket_statements
        .iter()
        .filter(|s| {
            effect(s) == "Deny"
                && conditions(s).contains(&condition("Bool", "aws:SecureTransport", &["\"false\""]))
        })
        .collect();
    assert_eq!(tls.len(), 1, "one statement refuses requests without TLS");
    assert_eq!(strings(&literal(tls[0], "actions")), ["s3:*".into()].into());
    let resources = text(attr(tls[0], "resources"));
    assert!(
        resources.contains("aws_s3_bucket.web.arn,")
            && resources.contains("${aws_s3_bucket.web.arn}/*"),
        "the bucket and its objects: {resources}"
    );
}

#[test]
fn the_distribution_reads_the_bucket_through_origin_access_control_over_https_only() {
    let stack = Stack::load();

    let oac = stack.block("resource", &["aws_cloudfront_origin_access_control", "web"]);
    assert_eq!(
        literal(oac, "origin_access_control_origin_type"),
        hcl::Value::from("s3")
    );
    assert_eq!(literal(oac, "signing_behavior"), hcl::Value::from("always"));
    assert_eq!(literal(oac, "signing_protocol"), hcl::Value::from("sigv4"));

    let distribution = stack.block("resource", &["aws_cloudfront_distribution", "web"]);
    assert_eq!(literal(distribution, "enabled"), hcl::Value::Bool(true));
    assert_eq!(
        literal(distribution, "default_root_object"),
        hcl::Value::from("index.html")
    );

    // One origin, the bucket, signed with OAC; no legacy origin access identity.
    let origin = nested(distribution, "origin");
    assert_eq!(
        text(attr(origin, "domain_name")),
        "aws_s3_bucket.web.bucket_regional_domain_name"
    );
    assert_eq!(
        text(attr(origin, "origin_access_control_id")),
        "aws_cloudfront_origin_access_control.web.id"
    );
    assert!(
        all(origin, "s3_origin_config").is_empty(),
        "OAC, not an origin access identity"
    );
    let origin_id = literal(origin, "origin_id");

    // Every behaviour: that origin, HTTP redirected to HTTPS, reads only, the security headers.
    let default = nested(distribution, "default_cache_behavior");
    let ordered = all(distribution, "ordered_cache_behavior");
    for behaviour in std::iter::once(default).chain(ordered.iter().copied()) {
        assert_eq!(literal(behaviour, "target_origin_id"), origin_id);
        assert_eq!(
            literal(behaviour, "viewer_protocol_policy"),
            hcl::Value::from("redirect-to-https")
        );
        assert_eq!(
            strings(&literal(behaviour, "allowed_methods")),
            ["GET", "HEAD"].map(String::from).into()
        );
        assert_eq!(
            text(attr(behaviour, "response_headers_policy_id")),
            "aws_cloudfront_response_headers_policy.web.id"
        );
    }
    assert_eq!(
        text(attr(default, "cache_policy_id")),
        "data.aws_cloudfront_cache_policy.caching_optimized.id"
    );

    // index.html and config.json are never cached at the edge: a deploy and an apply show at once.
    let short: BTreeMap<String, String> = ordered
        .iter()
        .map(|b| {
            (
                literal(b, "path_pattern").as_str().unwrap().to_owned(),
                text(attr(b, "cache_policy_id")),
            )
        })
        .collect();
    for path in ["/index.html", "/config.json"] {
        assert_eq!(
            short.get(path).map(String::as_str),
            Some("data.aws_cloudfront_cache_policy.caching_disabled.id"),
            "{path}"
        );
    }
    let disabled = stack.block("data", &["aws_cloudfront_cache_policy", "caching_disabled"]);
    assert_eq!(
        literal(disabled, "name"),
        hcl::Value::from("Managed-CachingDisabled")
    );
    let optimized = stack.block(
        "data",
        &["aws_cloudfront_cache_policy", "caching_optimized"],
    );
    assert_eq!(
        literal(optimized, "name"),
        hcl::Value::from("Managed-CachingOptimized")
    );

    // A single-page app: a path that is no file (S3's 403, or 404) is index.html with 200, so the
    // links in mails (/verify-email?token=..., /reset-password?token=...) open the app.
    let errors: BTreeMap<u64, (u64, String)> = all(distribution, "custom_error_response")
        .into_iter()
        .map(|e| {
            (
                literal(e, "error_code").as_u64().unwrap(),
                (
                    literal(e, "response_code").as_u64().unwrap(),
                    literal(e, "response_page_path")
                        .as_str()
                        .unwrap()
                        .to_owned(),
                ),
            )
        })
        .collect();
    for code in [403, 404] {
        assert_eq!(
            errors.get(&code),
            Some(&(200, "/index.html".to_owned())),
            "{code}"
        );
    }

    // CloudFront's own certificate, or the operator's with TLS 1.2 at least.
    let certificate = nested(distribution, "viewer_certificate");
    assert_eq!(
        text(attr(certificate, "acm_certificate_arn")),
        "var.web_certificate_arn"
    );
    assert!(text(attr(certificate, "minimum_protocol_version")).contains("\"TLSv1.2_2021\""));
}

#[test]
fn every_response_carries_the_csp_hsts_nosniff_no_framing_and_a_referrer_policy() {
    let stack = Stack::load();
    let policy = stack.block(
        "resource",
        &["aws_cloudfront_response_headers_policy", "web"],
    );
    let security = nested(policy, "security_headers_config");

    // Content-Security-Policy: the app's own scripts and styles only, the gateway and nothing
    // else to talk to, no framing.
    let csp = nested(security, "content_security_policy");
    assert_eq!(literal(csp, "override"), hcl::Value::Bool(true));
    assert_eq!(
        text(attr(csp, "content_security_policy")),
        "local.web_content_security_policy"
    );
    let mut ctx = stack.context();
    let (kind, api) = resource("aws_api_gateway_rest_api", "qbill", &[("id", "a1b2c3d4e5")]);
    ctx.declare_var(kind, api);
    let partition: hcl::Value = [("partition", "aws"), ("dns_suffix", "amazonaws.com")]
        .into_iter()
        .collect();
    let data: hcl::Value = [(
        "aws_partition",
        [("current", partition)].into_iter().collect::<hcl::Value>(),
    )]
    .into_iter()
    .collect();
    ctx.declare_var("data", data);
    let value = stack.locals(
        &[
            "region",
            "web_gateway_source",
            "web_content_security_policy",
        ],
        &ctx,
    )["web_content_security_policy"]
        .as_str()
        .expect("a string")
        .to_owned();
    let directives: BTreeMap<&str, Vec<&str>> = value
        .split(';')
        .map(|d| {
            let mut words = d.split_whitespace();
            (words.next().expect("a directive"), words.collect())
        })
        .collect();
    let expected: BTreeMap<&str, Vec<&str>> = [
        ("default-src", vec!["'none'"]),
        // Stripe.js, which keeps card numbers away from qbill, and nothing else.
        ("script-src", vec!["'self'", "https://js.stripe.com"]),
        ("style-src", vec!["'self'"]),
        ("img-src", vec!["'self'", "data:"]),
        ("font-src", vec!["'self'"]),
        // The stack's one API, by its invoke host: not any API of the region.
        (
            "connect-src",
            vec![
                "'self'",
                "https://a1b2c3d4e5.execute-api.eu-central-1.amazonaws.com",
                "https://api.stripe.com",
            ],
        ),
        // The card field and the bank's 3-D Secure page, in Stripe.js's own frames.
        (
            "frame-src",
            vec!["https://js.stripe.com", "https://hooks.stripe.com"],
        ),
        ("manifest-src", vec!["'self'"]),
        ("base-uri", vec!["'none'"]),
        ("form-action", vec!["'self'"]),
        ("frame-ancestors", vec!["'none'"]),
    ]
    .into();
    assert_eq!(directives, expected, "{value}");
    assert!(!value.contains("unsafe"), "{value}");
    assert!(
        !directives["connect-src"].iter().any(|s| s.contains('*')),
        "no wildcard host: {value}"
    );

    // HSTS for a year at least, subdomains included.
    let hsts = nested(security, "strict_transport_security");
    let max_age = literal(hsts, "access_control_max_age_sec")
        .as_u64()
        .unwrap();
    assert!(max_age >= 31_536_000, "{max_age}");
    assert_eq!(literal(hsts, "include_subdomains"), hcl::Value::Bool(true));
    assert_eq!(literal(hsts, "override"), hcl::Value::Bool(true));

    // nosniff, DENY, and a referrer policy that sends no path to other sites.
    let nosniff = nested(security, "content_type_options");
    assert_eq!(literal(nosniff, "override"), hcl::Value::Bool(true));
    let frame = nested(security, "frame_options");
    assert_eq!(literal(frame, "frame_option"), hcl::Value::from("DENY"));
    assert_eq!(literal(frame, "override"), hcl::Value::Bool(true));
    let referrer = nested(security, "referrer_policy");
    assert!(
        ["strict-origin-when-cross-origin", "no-referrer"]
            .map(hcl::Value::from)
            .contains(&literal(referrer, "referrer_policy"))
    );
    assert_eq!(literal(referrer, "override"), hcl::Value::Bool(true));
}

#[test]
fn config_json_names_the_gateway_and_is_never_cached() {
    let stack = Stack::load();
    let object = stack.block("resource", &["aws_s3_object", "web_config"]);
    assert_eq!(text(attr(object, "bucket")), "aws_s3_bucket.web.id");
    assert_eq!(literal(object, "key"), hcl::Value::from("config.json"));
    assert_eq!(
        literal(object, "content_type"),
        hcl::Value::from("application/json")
    );
    assert!(
        literal(object, "cache_control")
            .as_str()
            .unwrap()
            .contains("no-cache")
    );
    let invoke_url = "https://abc123.execute-api.eu-central-1.amazonaws.com/v1";
    let (kind, stage) = resource(
        "aws_api_gateway_stage",
        "qbill",
        &[("invoke_url", invoke_url)],
    );
    let var: hcl::Value = [("stripe_publishable_key", "pk_live_abc")]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), hcl::Value::from(v)))
        .collect();
    assert_eq!(
        stack.json(attr(object, "content"), &[(&kind, stage), ("var", var)]),
        serde_json::json!({ "gateway_url": invoke_url, "stripe_publishable_key": "pk_live_abc",
                            "stripe_js_url": "https://js.stripe.com/v3/" })
    );
    // The gateway_url output is the same URL.
    assert_eq!(
        text(attr(stack.block("output", &["gateway_url"]), "value")),
        "aws_api_gateway_stage.qbill.invoke_url"
    );
}

#[test]
fn the_api_allows_the_web_apps_origin_never_any_and_mails_link_to_the_app() {
    let stack = Stack::load();

    // templatefile() passes the app's origin as allowed_origin.
    let document = text(stack.local("openapi_document"));
    assert!(
        document.contains("allowed_origin = local.web_origin"),
        "{document}"
    );
    assert_eq!(
        text(stack.local("web_origin")),
        "regex(\"^https?://[^/?#]+\", local.web_url)",
        "scheme, host and port of the app's URL"
    );

    // The app's URL: the distribution's own by default, the operator's web_url when set.
    let (kind, distribution) = resource(
        "aws_cloudfront_distribution",
        "web",
        &[("domain_name", "d111111abcdef8.cloudfront.net")],
    );
    let mut ctx = stack.context();
    ctx.declare_var(kind.clone(), distribution.clone());
    assert_eq!(
        stack.locals(&["web_url"], &ctx)["web_url"],
        hcl::Value::from("https://d111111abcdef8.cloudfront.net")
    );
    let mut ctx = stack.context_with(&deployment(&[]));
    ctx.declare_var(kind, distribution);
    assert_eq!(
        stack.locals(&["web_url"], &ctx)["web_url"],
        hcl::Value::from("https://billing.example.com")
    );

    // Never "*": the API's definition refuses to be planned with a wildcard origin.
    let put = stack.block("resource", &["aws_api_gateway_rest_api_put", "qbill"]);
    let guards: Vec<_> = all(nested(put, "lifecycle"), "precondition")
        .into_iter()
        .map(|p| text(attr(p, "condition")))
        .collect();
    assert!(
        guards
            .iter()
            .any(|g| g.contains("local.web_origin != \"*\"")),
        "{guards:?}"
    );

    // Mails link to the same URL, and it is an output with the bucket and the distribution.
    let worker = stack.block("resource", &["aws_lambda_function", "worker"]);
    assert_eq!(
        lambda_environment(&stack, worker)["QBILL_WEB_URL"],
        "local.web_url"
    );
    for (output, value) in [
        ("web_url", "local.web_url"),
        ("web_bucket", "aws_s3_bucket.web.bucket"),
        ("web_distribution_id", "aws_cloudfront_distribution.web.id"),
    ] {
        assert_eq!(
            text(attr(stack.block("output", &[output]), "value")),
            value,
            "{output}"
        );
    }
    assert_eq!(
        literal(stack.block("variable", &["web_url"]), "default"),
        hcl::Value::Null,
        "by default the app is the distribution's"
    );
}

/// Every resource and data source an expression reaches, through the locals it names.
fn reaches(stack: &Stack, source: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut pending = vec![source.to_owned()];
    let mut seen = BTreeSet::new();
    while let Some(source) = pending.pop() {
        for word in source.split(|c: char| !(c.is_alphanumeric() || c == '_' || c == '.')) {
            let mut parts = word.split('.');
            match (parts.next(), parts.next(), parts.next()) {
                (Some("local"), Some(name), _) if seen.insert(name.to_owned()) => {
                    pending.push(text(stack.local(name)));
                }
                (Some("local"), _, _) => {}
                (Some("data"), Some(kind), Some(name)) => {
                    found.insert(format!("data.{kind}.{name}"));
                }
                (Some(kind), Some(name), _) if kind.starts_with("aws_") => {
                    found.insert(format!("{kind}.{name}"));
                }
                _ => {}
            }
        }
    }
    found
}

#[test]
fn the_csp_names_the_api_without_a_dependency_cycle_through_the_apis_definition() {
    let stack = Stack::load();
    // The API's definition allows the app's origin (CORS), which is the distribution's name, and
    // the distribution's headers name the API: so the API itself is created without a body, the
    // headers need only its id, and the definition is put on it by a resource of its own.
    let api = stack.block("resource", &["aws_api_gateway_rest_api", "qbill"]);
    assert!(
        api.body().attributes().all(|a| a.key() != "body"),
        "the REST API is created without its definition"
    );
    let api_text = hcl::format::to_string(api.body()).unwrap();
    let api_reaches = reaches(&stack, &api_text);
    assert!(
        !api_reaches.iter().any(|r| r.starts_with("aws_cloudfront_")),
        "the API must not wait for the distribution: {api_reaches:?}"
    );

    let put = stack.block("resource", &["aws_api_gateway_rest_api_put", "qbill"]);
    assert_eq!(
        text(attr(put, "rest_api_id")),
        "aws_api_gateway_rest_api.qbill.id"
    );
    assert_eq!(text(attr(put, "body")), "local.openapi_body");
    assert!(
        reaches(&stack, &text(attr(put, "body"))).contains("aws_cloudfront_distribution.web"),
        "the definition names the app's origin, the distribution's by default"
    );

    let policy = stack.block(
        "resource",
        &["aws_cloudfront_response_headers_policy", "web"],
    );
    let policy_reaches = reaches(&stack, &hcl::format::to_string(policy.body()).unwrap());
    assert!(
        policy_reaches.contains("aws_api_gateway_rest_api.qbill"),
        "the CSP names the API: {policy_reaches:?}"
    );
    assert!(
        !policy_reaches
            .iter()
            .any(|r| r.starts_with("aws_api_gateway_rest_api_put")
                || r.starts_with("aws_api_gateway_stage")
                || r.starts_with("aws_api_gateway_deployment")),
        "the headers must not wait for the definition: {policy_reaches:?}"
    );

    // A new definition is deployed after it is put.
    let deployment = stack.block("resource", &["aws_api_gateway_deployment", "qbill"]);
    assert!(
        text(attr(deployment, "depends_on")).contains("aws_api_gateway_rest_api_put.qbill"),
        "the deployment snapshots the API after its definition is put"
    );

    // The README's CSP row names the one API.
    let readme =
        std::fs::read_to_string(std::path::Path::new(crate::ROOT).join("terraform/README.md"))
            .unwrap();
    let row = readme
        .lines()
        .find(|l| l.starts_with("| `Content-Security-Policy`"))
        .expect("the CSP row");
    assert!(
        row.contains("https://<api id>.execute-api.<region>.amazonaws.com") && !row.contains("*."),
        "{row}"
    );
}
