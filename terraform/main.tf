# Names and values shared by the whole stack. The queue names and the reply prefix are part of
# the contract with the Rust worker and with gateway-config/openapi.yaml: keep them as they are.

locals {
  region     = var.aws_region
  account_id = data.aws_caller_identity.current.account_id
  partition  = data.aws_partition.current.partition

  request_queue_name = "${var.name}-requests"
  dlq_name           = "${var.name}-requests-dlq"
  reply_queue_prefix = "${var.name}-reply-"
  # The sweeper's work queue (one task per shard of reply queues) and its dead-letter queue.
  sweep_queue_name = "${var.name}-sweep"
  sweep_dlq_name   = "${var.name}-sweep-dlq"

  # Every reply queue the worker creates (CreateQueue on demand), the gateway reads and the
  # sweeper deletes: the prefix of their ARNs (QBILL_REPLY_QUEUE_ARN_PREFIX) and the pattern.
  reply_queue_arn_prefix  = "arn:${local.partition}:sqs:${local.region}:${local.account_id}:${local.reply_queue_prefix}"
  reply_queue_arn_pattern = "${local.reply_queue_arn_prefix}*"
  # ListQueues has no queue resource: it is granted on the account's queues.
  account_queues_arn = "arn:${local.partition}:sqs:${local.region}:${local.account_id}:*"

  # One package, three functions (QBILL_FUNCTION): the internet-facing worker, the operator's
  # admin function (migrations, the first operator) and the reply-queue sweeper.
  worker_function_name  = "${var.name}-worker"
  worker_log_group      = "/aws/lambda/${local.worker_function_name}"
  admin_function_name   = "${var.name}-admin"
  admin_log_group       = "/aws/lambda/${local.admin_function_name}"
  sweeper_function_name = "${var.name}-sweeper"
  sweeper_log_group     = "/aws/lambda/${local.sweeper_function_name}"

  az_count = length(var.availability_zones) > 0 ? length(var.availability_zones) : var.az_count
  azs      = slice(sort(data.aws_availability_zones.available.names), 0, min(local.az_count, length(data.aws_availability_zones.available.names)))

  # The OpenAPI template rendered for this stack. YAML anchors are resolved by yamldecode; API
  # Gateway receives plain JSON. allowed_origin is the one browser origin the API answers CORS
  # for: the web app's (web.tf), never "*" (a precondition on the API checks it).
  openapi_document = yamldecode(templatefile("${path.module}/../gateway-config/openapi.yaml", {
    partition          = local.partition
    aws_region         = local.region
    account_id         = local.account_id
    request_queue_name = aws_sqs_queue.requests.name
    reply_queue_prefix = local.reply_queue_prefix
    gateway_role_arn   = aws_iam_role.gateway.arn
    allowed_origin     = local.web_origin
  }))

  # With Cognito the pool signs users in, verifies their mail and resets their passwords: the
  # engine's own /auth* routes are not deployed. Every other route, and its validation, is.
  openapi_paths = {
    for path, item in local.openapi_document.paths : path => item
    if !(local.cognito && startswith(path, "/auth"))
  }
  # Putting the definition (apigateway.tf) makes its info.title and info.description the API's
  # name and description: they are the stack's own, so that the API resource sees no change.
  api_description = "qbill utility billing: requests onto ${local.request_queue_name}, replies from ${local.reply_queue_prefix}<queue_name>"

  openapi_body = jsonencode(merge(local.openapi_document, {
    paths = local.openapi_paths
    info  = merge(local.openapi_document.info, { title = var.name, description = local.api_description })
  }))

  # Identity: "builtin" or "cognito" (README.md, "Identity: built-in or Cognito").
  cognito = var.identity == "cognito"

  # Mail (README.md, "Mail (SES)"). The sender as the worker writes it into the From header.
  mail_from  = var.mail_from_name == "" ? var.mail_from_address : "${var.mail_from_name} <${var.mail_from_address}>"
  ses_region = coalesce(var.ses_region, var.aws_region)
  # The one SES identity the worker may send as: the domain when mail_domain is set, else the address.
  mail_identity_arn = var.mail_domain == null ? aws_ses_email_identity.sender[0].arn : aws_ses_domain_identity.sender[0].arn

  # Documents (README.md, "Documents (S3)"). Bucket names are global: the account and the region
  # make this one the stack's own. The worker writes under one prefix, and its role and the S3
  # endpoint allow that prefix only.
  documents_bucket_name = "${var.name}-documents-${local.account_id}-${local.region}"
  documents_prefix      = "documents/"
  documents_object_arns = "${aws_s3_bucket.documents.arn}/${local.documents_prefix}*"

  # The interface endpoints of network.tf. SES's API endpoint serves its own region only, so it
  # is created when the worker mails in this region; cognito-idp serves the pool's JWKS.
  interface_endpoint_services = concat(
    ["sqs", "secretsmanager"],
    local.ses_region == local.region ? ["email"] : [],
    local.cognito ? ["cognito-idp"] : [],
  )

  # The cache, over TLS: the worker's, and the sweeper's for the reply queues' last-reply stamps.
  redis_url = "rediss://${aws_elasticache_replication_group.qbill.primary_endpoint_address}:6379"

  # Where the worker connects: the instance, or the proxy in front of it.
  database_host = var.use_rds_proxy ? aws_db_proxy.qbill[0].endpoint : aws_db_instance.qbill.address

  # rds-db:connect is granted on the resource id of whatever the worker connects to:
  # the instance's dbi resource id, or the proxy's prx-... id (the last field of its ARN).
  database_connect_resource_id = var.use_rds_proxy ? element(split(":", aws_db_proxy.qbill[0].arn), 6) : aws_db_instance.qbill.resource_id

  alarm_actions = concat(var.alarm_actions, aws_sns_topic.alarms[*].arn)
}
