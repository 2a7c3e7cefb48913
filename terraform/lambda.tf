# One package (the bootstrap binary in the zip built by scripts/package-lambda), three functions;
# QBILL_FUNCTION says which events each accepts:
#   worker   the internet-facing one: the request queue's event source mapping (worker_max_concurrency
#            is the worker count) and the overdue (daily), notify (every minute) and due-soon
#            (daily) schedules. It holds neither the database master secret nor the first operator.
#   admin    invoked only by an operator (aws lambda invoke): migrations and the first operator,
#            as the database master user. No event source, no schedule.
#   sweeper  the reply-queue sweep: the schedule splits it into shards on the sweep queue, whose
#            event source mapping works through them (sweeper.tf).

resource "aws_cloudwatch_log_group" "worker" {
  #checkov:skip=CKV_AWS_338:Operational logs; retention is the operator's log_retention_days (default 30). Billing records live in PostgreSQL, audit trails (access logs, flow logs) keep audit_log_retention_days.
  name              = local.worker_log_group
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.data.arn
}

locals {
  # With identity = "cognito": whose ID tokens the worker accepts (the issuer also names the JWKS,
  # <issuer>/.well-known/jwks.json). With builtin, neither is set.
  worker_cognito_environment = local.cognito ? {
    QBILL_COGNITO_ISSUER    = local.cognito_issuer
    QBILL_COGNITO_CLIENT_ID = aws_cognito_user_pool_client.web[0].id
  } : {}
}

locals {
  # The three functions' logs (logging_config): JSON lines, which Lambda filters by their "level".
  # Lambda hands these to the bootstrap as AWS_LAMBDA_LOG_FORMAT and AWS_LAMBDA_LOG_LEVEL
  # (workers/lambda/src/logging.rs); QBILL_LOG set in a function's environment by hand overrides
  # the level, but only downwards: Lambda still drops what is above this one. Keep it at INFO or
  # more verbose (DEBUG, TRACE): the metrics' embedded-metric-format lines carry no level, Lambda
  # counts them as INFO, and at WARN it would drop them and the dashboard and alarms with them.
  # The system level is that of Lambda's own records (start, end, report).
  lambda_log_format            = "JSON"
  lambda_application_log_level = "INFO"
  lambda_system_log_level      = "INFO"
}

resource "aws_lambda_function" "worker" {
  #checkov:skip=CKV_AWS_116:Driven by an SQS event source mapping: failed messages go to the source queue's dead-letter queue (aws_sqs_queue.requests_dlq); a function DLQ applies only to asynchronous invocations.
  #checkov:skip=CKV_AWS_115:Concurrency is capped where an SQS-driven function is capped, by the event source mapping's maximum_concurrency (worker_max_concurrency); reserved concurrency is opt-in (worker_reserved_concurrency, default -1) so the stack does not carve capacity out of the account pool.
  #checkov:skip=CKV_AWS_272:The package is built from source by scripts/package-lambda and pinned by source_code_hash; this stack has no Signer profile to verify against.
  function_name = local.worker_function_name
  description   = "qbill worker: answers requests from ${local.request_queue_name} on reply queues ${local.reply_queue_prefix}*"
  role          = aws_iam_role.worker.arn

  runtime          = "provided.al2023"
  handler          = "bootstrap"
  filename         = var.lambda_package
  source_code_hash = filebase64sha256(var.lambda_package)
  architectures    = [var.lambda_architecture]
  timeout          = var.lambda_timeout_seconds
  memory_size      = var.lambda_memory_mb

  # -1: unreserved (shares the account's pool). A number reserves that much for the worker
  # and caps it; it should be >= worker_max_concurrency (checked on the event source mapping).
  reserved_concurrent_executions = var.worker_reserved_concurrency

  kms_key_arn = aws_kms_key.data.arn

  vpc_config {
    subnet_ids         = aws_subnet.private[*].id
    security_group_ids = [aws_security_group.worker.id]
  }

  tracing_config {
    mode = var.lambda_tracing_mode
  }

  logging_config {
    log_format            = local.lambda_log_format
    log_group             = local.worker_log_group
    application_log_level = local.lambda_application_log_level
    system_log_level      = local.lambda_system_log_level
  }

  environment {
    variables = merge({
      QBILL_FUNCTION                     = "worker"
      QBILL_REPLY_QUEUE_PREFIX           = local.reply_queue_prefix
      QBILL_REPLY_QUEUE_ARN_PREFIX       = local.reply_queue_arn_prefix
      QBILL_METRICS_NAMESPACE            = var.name
      QBILL_MAX_RECEIVES                 = tostring(var.max_receive_count)
      QBILL_REPLY_RETENTION_SECONDS      = tostring(var.reply_retention_seconds)
      QBILL_REPLY_IDLE_SECONDS           = tostring(var.reply_idle_seconds)
      QBILL_DATABASE_AUTH                = var.database_auth
      QBILL_DATABASE_HOST                = local.database_host
      QBILL_DATABASE_PORT                = "5432"
      QBILL_DATABASE_NAME                = var.database_name
      QBILL_DATABASE_USER                = var.database_user
      QBILL_DATABASE_CA_BUNDLE           = "/var/task/rds-global-bundle.pem"
      QBILL_DATABASE_PASSWORD_SECRET_ARN = aws_secretsmanager_secret.database_password.arn
      QBILL_DATABASE_POOL_SIZE           = "2"
      REDIS_URL                          = local.redis_url
      QBILL_REDIS_AUTH_SECRET_ARN        = aws_secretsmanager_secret.redis_auth.arn
      QBILL_JWT_SECRET_ARN               = aws_secretsmanager_secret.jwt.arn
      QBILL_MAIL_FROM                    = local.mail_from
      QBILL_WEB_URL                      = local.web_url
      QBILL_SES_REGION                   = local.ses_region
      QBILL_IDENTITY                     = var.identity
      QBILL_DOCUMENTS_BUCKET             = aws_s3_bucket.documents.bucket
      QBILL_DOCUMENT_URL_SECONDS         = tostring(var.document_url_seconds)
      QBILL_PAYMENTS                     = "stripe"
      QBILL_STRIPE_SECRET_ARN            = aws_secretsmanager_secret.stripe.arn
      QBILL_EVENT_BUS                    = aws_cloudwatch_event_bus.events.name
    }, local.worker_cognito_environment)
  }

  # The role's policy must be in place before Lambda validates the VPC configuration (it creates
  # network interfaces with the role) and before the first message arrives; the documents bucket's
  # encryption and policy before the first document is written.
  depends_on = [
    aws_iam_role_policy.worker,
    aws_cloudwatch_log_group.worker,
    aws_s3_bucket_server_side_encryption_configuration.documents,
    aws_s3_bucket_policy.documents,
  ]
}

resource "aws_lambda_event_source_mapping" "requests" {
  event_source_arn = aws_sqs_queue.requests.arn
  function_name    = aws_lambda_function.worker.arn
  enabled          = true

  batch_size                         = var.lambda_batch_size
  maximum_batching_window_in_seconds = var.lambda_batching_window_seconds

  # The worker reports the messages it could not handle; only those come back.
  function_response_types = ["ReportBatchItemFailures"]

  scaling_config {
    maximum_concurrency = var.worker_max_concurrency
  }

  lifecycle {
    precondition {
      condition     = var.lambda_batch_size <= 10 || var.lambda_batching_window_seconds >= 1
      error_message = "lambda_batch_size above 10 requires lambda_batching_window_seconds of at least 1."
    }

    precondition {
      condition     = var.worker_reserved_concurrency == -1 || var.worker_reserved_concurrency == 0 || var.worker_reserved_concurrency >= var.worker_max_concurrency
      error_message = "worker_reserved_concurrency must be -1 (unreserved), 0 (stopped) or at least worker_max_concurrency; below it the event source mapping is throttled."
    }
  }

  # The worker reaches SQS (replies), Secrets Manager, SES and Cognito through the endpoints, and
  # S3 (documents) through the gateway endpoint: no message is handed to it before they exist.
  depends_on = [
    aws_iam_role_policy.worker,
    aws_vpc_endpoint.interface,
    aws_vpc_endpoint.s3,
    aws_security_group_rule.worker_to_s3,
  ]
}

# The overdue-bills job: the worker, invoked daily with {"qbill": "overdue"}, marks the bills past
# their due date plus the provider's grace days overdue and charges their late fees. It is
# idempotent and safe to run twice at once, so Lambda's retries of a failed asynchronous
# invocation and a run by hand (see README.md) do no harm.
resource "aws_cloudwatch_event_rule" "overdue" {
  name                = "${var.name}-overdue"
  description         = "Marks qbill bills overdue and charges their late fees"
  schedule_expression = var.overdue_schedule
}

resource "aws_cloudwatch_event_target" "overdue" {
  rule  = aws_cloudwatch_event_rule.overdue.name
  arn   = aws_lambda_function.worker.arn
  input = jsonencode({ qbill = "overdue" })
}

resource "aws_lambda_permission" "overdue" {
  statement_id  = "AllowOverdueSchedule"
  action        = "lambda:InvokeFunction"
  function_name = aws_lambda_function.worker.function_name
  principal     = "events.amazonaws.com"
  source_arn    = aws_cloudwatch_event_rule.overdue.arn
}

# The notification sender: the worker, invoked every minute with {"qbill": "notify"}, drains the
# notification outbox and mails through SES (mail.tf). A mail that fails is tried again by a later
# run; one that keeps failing is set aside (qbill notifications failed lists them). Runs can
# overlap (a run slower than a minute, Lambda's retries of a failed asynchronous invocation), so
# the worker claims what it sends: two runs never mail the same notification.
resource "aws_cloudwatch_event_rule" "notify" {
  name                = "${var.name}-notify"
  description         = "Sends the qbill notification outbox by mail"
  schedule_expression = var.notify_schedule
}

resource "aws_cloudwatch_event_target" "notify" {
  rule  = aws_cloudwatch_event_rule.notify.name
  arn   = aws_lambda_function.worker.arn
  input = jsonencode({ qbill = "notify" })
}

resource "aws_lambda_permission" "notify" {
  statement_id  = "AllowNotifySchedule"
  action        = "lambda:InvokeFunction"
  function_name = aws_lambda_function.worker.function_name
  principal     = "events.amazonaws.com"
  source_arn    = aws_cloudwatch_event_rule.notify.arn
}

# The due-soon job: the worker, invoked daily with {"qbill": "due-soon"}, puts a bill.due_soon
# notification in the outbox for every bill due in 3 days; the sender above mails them.
resource "aws_cloudwatch_event_rule" "due_soon" {
  name                = "${var.name}-due-soon"
  description         = "Notifies qbill households of bills due in 3 days"
  schedule_expression = var.due_soon_schedule
}

resource "aws_cloudwatch_event_target" "due_soon" {
  rule  = aws_cloudwatch_event_rule.due_soon.name
  arn   = aws_lambda_function.worker.arn
  input = jsonencode({ qbill = "due-soon" })
}

resource "aws_lambda_permission" "due_soon" {
  statement_id  = "AllowDueSoonSchedule"
  action        = "lambda:InvokeFunction"
  function_name = aws_lambda_function.worker.function_name
  principal     = "events.amazonaws.com"
  source_arn    = aws_cloudwatch_event_rule.due_soon.arn
}
