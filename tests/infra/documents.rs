//! Documents in S3: a private bucket, encrypted with the stack's data key, versioned, TLS only
//! and kept `documents_retention_days`; the worker may put and get objects under `documents/` and
//! nothing else, learns the bucket from its environment, and reaches S3 through a gateway endpoint
//! that admits the documents only.

use std::collections::BTreeSet;

use hcl::Block;
use hcl::eval::{Context, Evaluate};

use crate::{Stack, attr, lambda_environment, strings, text};

/// The `statement` blocks of `data "aws_iam_policy_document" "<name>"`.
pub(crate) fn statements<'a>(stack: &'a Stack, name: &str) -> Vec<&'a Block> {
    stack
        .block("data", &["aws_iam_policy_document", name])
        .body()
        .blocks()
        .filter(|b| b.identifier() == "statement")
        .collect()
}

/// The one nested block `kind` of `block`.
pub(crate) fn nested<'a>(block: &'a Block, kind: &str) -> &'a Block {
    let mut found = block.body().blocks().filter(|b| b.identifier() == kind);
    let first = found
        .next()
        .unwrap_or_else(|| panic!("{} {:?} has no {kind}", block.identifier(), block.labels()));
    assert!(found.next().is_none(), "{kind} appears once");
    first
}

/// A literal's value (a string, a number, a list of strings ...).
pub(crate) fn literal(block: &Block, key: &str) -> hcl::Value {
    attr(block, key)
        .evaluate(&Context::new())
        .unwrap_or_else(|e| panic!("{key} is not a literal: {e}"))
}

pub(crate) fn effect(statement: &Block) -> String {
    match statement.body().attributes().find(|a| a.key() == "effect") {
        Some(effect) => text(effect.expr()).trim_matches('"').to_owned(),
        None => "Allow".to_owned(),
    }
}

/// The text of each item of a list literal (`[a, b]`, however it is laid out).
pub(crate) fn items(block: &Block, key: &str) -> Vec<String> {
    match attr(block, key) {
        hcl::Expression::Array(items) => items.iter().map(text).collect(),
        other => panic!("{key} is not a list literal: {}", text(other)),
    }
}

pub(crate) type Condition = (String, String, Vec<String>);

/// The `condition` blocks of a statement: (test, variable, the values' texts).
pub(crate) fn conditions(statement: &Block) -> BTreeSet<Condition> {
    statement
        .body()
        .blocks()
        .filter(|b| b.identifier() == "condition")
        .map(|c| {
            let string = |key: &str| literal(c, key).as_str().expect("a string").to_owned();
            (string("test"), string("variable"), items(c, "values"))
        })
        .collect()
}

pub(crate) fn condition(test: &str, variable: &str, values: &[&str]) -> Condition {
    (
        test.to_owned(),
        variable.to_owned(),
        values.iter().map(|v| v.to_string()).collect(),
    )
}

/// A context in which the bucket's ARN is `arn:aws:s3:::bucket`.
fn with_bucket(stack: &Stack) -> Context<'static> {
    let mut ctx = stack.context();
    let bucket: hcl::Value = [("arn", "arn:aws:s3:::bucket")].into_iter().collect();
    ctx.declare_var(
        "aws_s3_bucket",
        [("documents", bucket)].into_iter().collect::<hcl::Value>(),
    );
    ctx
}

#[test]
fn the_documents_bucket_is_private_encrypted_with_the_data_key_versioned_and_tls_only() {
    let stack = Stack::load();

    // One bucket per stack, account and region (bucket names are global).
    let bucket = stack.block("resource", &["aws_s3_bucket", "documents"]);
    assert_eq!(text(attr(bucket, "bucket")), "local.documents_bucket_name");
    let ctx = stack.context_in_account("123456789012");
    let names = ["region", "account_id", "documents_bucket_name"];
    assert_eq!(
        stack.locals(&names, &ctx)["documents_bucket_name"],
        hcl::Value::from("qbill-documents-123456789012-eu-central-1")
    );
    let guard = text(attr(
        nested(nested(bucket, "lifecycle"), "precondition"),
        "condition",
    ));
    assert_eq!(guard, "length(local.documents_bucket_name) <= 63");

    // Every setting applies to that bucket.
    for kind in [
        "aws_s3_bucket_public_access_block",
        "aws_s3_bucket_ownership_controls",
        "aws_s3_bucket_server_side_encryption_configuration",
        "aws_s3_bucket_versioning",
        "aws_s3_bucket_lifecycle_configuration",
        "aws_s3_bucket_policy",
    ] {
        let setting = stack.block("resource", &[kind, "documents"]);
        assert_eq!(text(attr(setting, "bucket")), "aws_s3_bucket.documents.id");
    }

    // Public access: all four blocks on; ACLs disabled.
    let public = stack.block(
        "resource",
        &["aws_s3_bucket_public_access_block", "documents"],
    );
    for key in [
        "block_public_acls",
        "block_public_policy",
        "ignore_public_acls",
        "restrict_public_buckets",
    ] {
        assert_eq!(literal(public, key), hcl::Value::Bool(true), "{key}");
    }
    let ownership = stack.block(
        "resource",
        &["aws_s3_bucket_ownership_controls", "documents"],
    );
    assert_eq!(
        literal(nested(ownership, "rule"), "object_ownership"),
        hcl::Value::from("BucketOwnerEnforced")
    );

    // Encrypted by default with the stack's data key (the worker's KMS grant names that key).
    let encryption = stack.block(
        "resource",
        &[
            "aws_s3_bucket_server_side_encryption_configuration",
            "documents",
        ],
    );
    let rule = nested(encryption, "rule");
    let default = nested(rule, "apply_server_side_encryption_by_default");
    assert_eq!(
        literal(default, "sse_algorithm"),
        hcl::Value::from("aws:kms")
    );
    assert_eq!(
        text(attr(default, "kms_master_key_id")),
        "aws_kms_key.data.arn"
    );
    assert_eq!(
        literal(rule, "bucket_key_enabled"),
        hcl::Value::Bool(true),
        "the worker's KMS grant expects the bucket's ARN as the encryption context"
    );

    // Versioned: a document written over keeps its first version.
    let versioning = stack.block("resource", &["aws_s3_bucket_versioning", "documents"]);
    assert_eq!(
        literal(nested(versioning, "versioning_configuration"), "status"),
        hcl::Value::from("Enabled")
    );

    // The bucket policy grants nothing (every statement denies) and refuses plain HTTP.
    let policy = stack.block("resource", &["aws_s3_bucket_policy", "documents"]);
    assert_eq!(
        text(attr(policy, "policy")),
        "data.aws_iam_policy_document.documents_bucket.json"
    );
    let bucket_statements = statements(&stack, "documents_bucket");
    for statement in &bucket_statements {
        assert_eq!(
            effect(statement),
            "Deny",
            "the bucket policy grants nothing"
        );
        let principals = nested(statement, "principals");
        assert_eq!(literal(principals, "type"), hcl::Value::from("*"));
        assert_eq!(
            strings(&literal(principals, "identifiers")),
            ["*".into()].into()
        );
    }
    let tls: Vec<_> = bucket_statements
        .iter()
        .filter(|s| {
            conditions(s).contains(&condition("Bool", "aws:SecureTransport", &["\"false\""]))
        })
        .collect();
    assert_eq!(tls.len(), 1, "one statement refuses requests without TLS");
    assert_eq!(strings(&literal(tls[0], "actions")), ["s3:*".into()].into());
    assert_eq!(
        strings(
            &attr(tls[0], "resources")
                .evaluate(&with_bucket(&stack))
                .unwrap()
        ),
        ["arn:aws:s3:::bucket", "arn:aws:s3:::bucket/*"]
            .map(String::from)
            .into(),
        "the bucket and every object in it"
    );

    // A write that names another kind of encryption, or another key, is refused.
    let refusing = |expected: &[Condition]| {
        bucket_statements.iter().any(|s| {
            strings(&literal(s, "actions")) == ["s3:PutObject".into()].into()
                && conditions(s) == expected.iter().cloned().collect()
        })
    };
    assert!(refusing(&[condition(
        "StringNotEqualsIfExists",
        "s3:x-amz-server-side-encryption",
        &["\"aws:kms\""]
    )]));
    assert!(refusing(&[
        condition(
            "StringEquals",
            "s3:x-amz-server-side-encryption",
            &["\"aws:kms\""]
        ),
        condition(
            "StringNotEquals",
            "s3:x-amz-server-side-encryption-aws-kms-key-id",
            &["aws_kms_key.data.arn"]
        ),
    ]));
    assert!(refusing(&[condition(
        "Null",
        "s3:x-amz-server-side-encryption-customer-algorithm",
        &["\"false\""]
    )]));
}

#[test]
fn the_lifecycle_aborts_uploads_after_a_day_and_keeps_documents_for_the_retention() {
    let stack = Stack::load();
    let lifecycle = stack.block(
        "resource",
        &["aws_s3_bucket_lifecycle_configuration", "documents"],
    );
    let rule = nested(lifecycle, "rule");
    assert_eq!(literal(rule, "status"), hcl::Value::from("Enabled"));
    assert!(
        nested(rule, "filter").body().iter().next().is_none(),
        "the rule covers the whole bucket"
    );
    assert_eq!(
        literal(
            nested(rule, "abort_incomplete_multipart_upload"),
            "days_after_initiation"
        ),
        hcl::Value::from(1)
    );
    assert_eq!(
        text(attr(nested(rule, "expiration"), "days")),
        "var.documents_retention_days"
    );
    assert_eq!(
        text(attr(
            nested(rule, "noncurrent_version_expiration"),
            "noncurrent_days"
        )),
        "var.documents_noncurrent_days"
    );
    assert!(
        text(attr(lifecycle, "depends_on")).contains("aws_s3_bucket_versioning.documents"),
        "noncurrent rules need versioning first"
    );

    // Ten years by default, for the books; old versions a while after.
    let default = |variable: &str| {
        literal(stack.block("variable", &[variable]), "default")
            .as_u64()
            .unwrap_or_else(|| panic!("{variable} has a whole number default"))
    };
    assert!(default("documents_retention_days") >= 3650);
    assert!(default("documents_noncurrent_days") >= 1);
}

#[test]
fn the_worker_may_put_and_get_documents_under_the_prefix_and_nothing_else_in_s3() {
    let stack = Stack::load();
    assert_eq!(
        stack.evaluate(stack.local("documents_prefix")),
        "documents/"
    );
    let names = ["documents_prefix", "documents_object_arns"];
    assert_eq!(
        stack.locals(&names, &with_bucket(&stack))["documents_object_arns"],
        hcl::Value::from("arn:aws:s3:::bucket/documents/*")
    );

    // Every statement of the stack that allows an S3 action: the worker's, and the endpoint's
    // (which grants nothing by itself but bounds what passes through it). Both: PutObject and
    // GetObject on the documents' keys, no s3:*, no listing, no deleting, nothing bucket-wide.
    // (The web app's bucket policy lets CloudFront read the app's files; web.rs checks it.)
    let allowing: Vec<(String, &Block)> = stack
        .blocks("data")
        .filter(|d| d.labels()[0].as_str() == "aws_iam_policy_document")
        .filter(|d| d.labels()[1].as_str() != "web_bucket")
        .flat_map(|d| {
            let name = d.labels()[1].as_str().to_owned();
            d.body()
                .blocks()
                .filter(|b| b.identifier() == "statement")
                .map(move |s| (name.clone(), s))
        })
        .filter(|(_, s)| effect(s) == "Allow" && text(attr(s, "actions")).contains("\"s3:"))
        .collect();
    let documents: BTreeSet<_> = allowing.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(documents, ["s3_endpoint", "worker"].into());
    for (name, statement) in &allowing {
        assert_eq!(
            strings(&literal(statement, "actions")),
            ["s3:GetObject", "s3:PutObject"].map(String::from).into(),
            "{name}"
        );
        assert_eq!(
            items(statement, "resources"),
            ["local.documents_object_arns"],
            "{name}"
        );
    }
    assert_eq!(
        allowing.iter().filter(|(name, _)| name == "worker").count(),
        1,
        "one statement of the worker's grants S3"
    );
    // No managed policy brings S3 in by another door.
    for attachment in stack
        .blocks("resource")
        .filter(|b| b.labels()[0].as_str() == "aws_iam_role_policy_attachment")
    {
        assert!(
            !text(attr(attachment, "policy_arn")).contains("S3"),
            "{:?}",
            attachment.labels()
        );
    }

    // The worker may use the data key through S3, for this bucket: a write generates a data key,
    // a read (the worker's, or a link's it signed) decrypts.
    let kms: Vec<_> = statements(&stack, "worker")
        .into_iter()
        .filter(|s| {
            conditions(s).contains(&condition(
                "StringEquals",
                "kms:ViaService",
                &["\"s3.${local.region}.amazonaws.com\""],
            ))
        })
        .collect();
    assert_eq!(
        kms.len(),
        1,
        "one statement lets S3 use a key for the worker"
    );
    assert_eq!(
        strings(&literal(kms[0], "actions")),
        ["kms:Decrypt", "kms:GenerateDataKey"]
            .map(String::from)
            .into()
    );
    assert_eq!(items(kms[0], "resources"), ["aws_kms_key.data.arn"]);
    assert!(conditions(kms[0]).contains(&condition(
        "StringLike",
        "kms:EncryptionContext:aws:s3:arn",
        &["aws_s3_bucket.documents.arn", "local.documents_object_arns"],
    )));
}

#[test]
fn the_worker_learns_the_bucket_and_the_links_lifetime() {
    let stack = Stack::load();
    let worker = stack.block("resource", &["aws_lambda_function", "worker"]);
    let environment = lambda_environment(&stack, worker);
    assert_eq!(
        environment["QBILL_DOCUMENTS_BUCKET"],
        "aws_s3_bucket.documents.bucket"
    );
    assert_eq!(
        environment["QBILL_DOCUMENT_URL_SECONDS"],
        "tostring(var.document_url_seconds)"
    );
    // No document is written before the bucket encrypts with the data key and refuses plain HTTP.
    let depends_on = text(attr(worker, "depends_on"));
    for setting in [
        "aws_s3_bucket_server_side_encryption_configuration.documents",
        "aws_s3_bucket_policy.documents",
    ] {
        assert!(depends_on.contains(setting), "{depends_on}");
    }
    // The code's default: 15 minutes.
    assert_eq!(
        literal(
            stack.block("variable", &["document_url_seconds"]),
            "default"
        ),
        hcl::Value::from(900)
    );
    assert_eq!(
        text(attr(stack.block("output", &["documents_bucket"]), "value")),
        "aws_s3_bucket.documents.bucket"
    );
}

#[test]
fn the_worker_reaches_s3_through_a_gateway_endpoint_that_admits_the_documents_only() {
    let stack = Stack::load();
    let endpoint = stack.block("resource", &["aws_vpc_endpoint", "s3"]);
    assert_eq!(
        literal(endpoint, "vpc_endpoint_type"),
        hcl::Value::from("Gateway")
    );
    assert_eq!(
        text(attr(endpoint, "service_name")),
        "\"com.amazonaws.${local.region}.s3\""
    );
    assert_eq!(text(attr(endpoint, "vpc_id")), "aws_vpc.qbill.id");
    // The route table of every private subnet.
    assert_eq!(
        items(endpoint, "route_table_ids"),
        ["aws_route_table.private.id"]
    );
    let association = stack.block("resource", &["aws_route_table_association", "private"]);
    assert_eq!(
        text(attr(association, "route_table_id")),
        "aws_route_table.private.id"
    );
    assert_eq!(
        text(attr(association, "subnet_id")),
        "aws_subnet.private[count.index].id"
    );

    // Its policy: the documents' keys (checked with every S3 grant above), this account's
    // principals only.
    assert_eq!(
        text(attr(endpoint, "policy")),
        "data.aws_iam_policy_document.s3_endpoint.json"
    );
    let policy = statements(&stack, "s3_endpoint");
    assert_eq!(policy.len(), 1);
    assert!(conditions(policy[0]).contains(&condition(
        "StringEquals",
        "aws:PrincipalAccount",
        &["local.account_id"]
    )));

    // The worker's security group lets HTTPS out to S3's prefix list, and the function gets no
    // message before the endpoint and that rule exist.
    let egress = stack.block("resource", &["aws_security_group_rule", "worker_to_s3"]);
    assert_eq!(literal(egress, "type"), hcl::Value::from("egress"));
    assert_eq!(
        text(attr(egress, "security_group_id")),
        "aws_security_group.worker.id"
    );
    assert_eq!(literal(egress, "from_port"), hcl::Value::from(443));
    assert_eq!(literal(egress, "to_port"), hcl::Value::from(443));
    assert_eq!(
        items(egress, "prefix_list_ids"),
        ["aws_vpc_endpoint.s3.prefix_list_id"]
    );
    let mapping = stack.block("resource", &["aws_lambda_event_source_mapping", "requests"]);
    let depends_on = text(attr(mapping, "depends_on"));
    assert!(depends_on.contains("aws_vpc_endpoint.s3"), "{depends_on}");
    assert!(
        depends_on.contains("aws_security_group_rule.worker_to_s3"),
        "{depends_on}"
    );
}
