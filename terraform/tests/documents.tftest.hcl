# `terraform test` (after `terraform init`): plans the stack with a mocked AWS provider, as
# identity_and_mail.tftest.hcl does, and checks the documents bucket as a plan shows it: its name,
# its settings, the worker's environment, the S3 gateway endpoint, and the guards on the name's
# length and the links' lifetime. The policies are rendered by the mocked provider (as "{}"), so
# tests/infra (cargo test) checks their statements instead.

mock_provider "aws" {
  mock_data "aws_availability_zones" {
    defaults = { names = ["eu-central-1a", "eu-central-1b", "eu-central-1c"] }
  }
  mock_data "aws_caller_identity" {
    defaults = { account_id = "123456789012" }
  }
  mock_data "aws_partition" {
    defaults = { partition = "aws" }
  }
  mock_data "aws_iam_policy_document" {
    defaults = { json = "{}" }
  }
}

mock_provider "aws" {
  alias = "ses"
}

override_resource {
  target          = aws_iam_role.gateway
  override_during = plan
  values = {
    arn = "arn:aws:iam::123456789012:role/qbill-gateway"
  }
}

variables {
  web_url                = "https://billing.example.com"
  mail_from_address      = "billing@example.com"
  lambda_package         = "README.md"
  stripe_secret_key      = "sk_test_plan"
  stripe_webhook_secret  = "whsec_plan"
  stripe_publishable_key = "pk_test_plan"
}

run "the_documents_bucket_is_private_encrypted_versioned_and_kept_ten_years" {
  command = plan

  assert {
    condition     = aws_s3_bucket.documents.bucket == "qbill-documents-123456789012-eu-central-1" && output.documents_bucket == aws_s3_bucket.documents.bucket
    error_message = "The bucket is named after the stack, the account and the region, and is an output."
  }
  assert {
    condition = (
      aws_s3_bucket_public_access_block.documents.block_public_acls
      && aws_s3_bucket_public_access_block.documents.block_public_policy
      && aws_s3_bucket_public_access_block.documents.ignore_public_acls
      && aws_s3_bucket_public_access_block.documents.restrict_public_buckets
      && aws_s3_bucket_ownership_controls.documents.rule[0].object_ownership == "BucketOwnerEnforced"
    )
    error_message = "Every public access block is on and ACLs are disabled."
  }
  assert {
    condition = alltrue([
      for rule in aws_s3_bucket_server_side_encryption_configuration.documents.rule :
      rule.apply_server_side_encryption_by_default[0].sse_algorithm == "aws:kms" && rule.bucket_key_enabled
    ])
    error_message = "Objects are encrypted with KMS (the data key) and an S3 Bucket Key."
  }
  assert {
    condition     = aws_s3_bucket_versioning.documents.versioning_configuration[0].status == "Enabled"
    error_message = "The bucket is versioned."
  }
  assert {
    condition = (
      aws_s3_bucket_lifecycle_configuration.documents.rule[0].abort_incomplete_multipart_upload[0].days_after_initiation == 1
      && aws_s3_bucket_lifecycle_configuration.documents.rule[0].expiration[0].days == 3650
      && aws_s3_bucket_lifecycle_configuration.documents.rule[0].noncurrent_version_expiration[0].noncurrent_days == 30
    )
    error_message = "Incomplete uploads go after a day, documents after ten years, old versions 30 days later."
  }
  assert {
    condition = (
      aws_lambda_function.worker.environment[0].variables["QBILL_DOCUMENTS_BUCKET"] == "qbill-documents-123456789012-eu-central-1"
      && aws_lambda_function.worker.environment[0].variables["QBILL_DOCUMENT_URL_SECONDS"] == "900"
    )
    error_message = "The worker learns the bucket and the links' lifetime (15 minutes)."
  }
  assert {
    condition = (
      aws_vpc_endpoint.s3.vpc_endpoint_type == "Gateway"
      && aws_vpc_endpoint.s3.service_name == "com.amazonaws.eu-central-1.s3"
      && length(aws_vpc_endpoint.s3.route_table_ids) == 1
    )
    error_message = "The private route table reaches S3 through a gateway endpoint."
  }
}

run "a_name_too_long_for_the_bucket_is_refused" {
  command = plan

  variables {
    name = "qbill-production-eu-billing-x"
  }

  expect_failures = [aws_s3_bucket.documents]
}

run "links_longer_than_an_hour_are_refused" {
  command = plan

  variables {
    document_url_seconds = 7200
  }

  expect_failures = [var.document_url_seconds]
}
