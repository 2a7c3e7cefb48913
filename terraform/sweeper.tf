# The reply-queue sweep, in its own function with its own role: the worker can no longer list or
# delete queues. The schedule invokes the sweeper with {"qbill": "sweep"}; it splits the reply
# queues into 16 shards by name prefix (<reply prefix>0 .. <reply prefix>f) and sends one task
# per shard to the sweep queue. The sweep queue drives the same function, a task at a time
# ({"qbill": "sweep-shard", "prefix": ..., "next_token": ...}): it sweeps ListQueues pages of
# its shard until the shard is done or its time is nearly up, then sends the continuation task.
# So a sweep of any size finishes, a page at a time. A reply queue's last reply is stamped in
# Redis by the worker and read here (docs/reliability.md, "Reply queues do not pile up").

# ---------------------------------------------------------------------------------------------
# The sweep queue and its dead-letter queue
# ---------------------------------------------------------------------------------------------

resource "aws_sqs_queue" "sweep_dlq" {
  name                      = local.sweep_dlq_name
  message_retention_seconds = var.dlq_retention_seconds

  kms_master_key_id                 = aws_kms_key.sqs.arn
  kms_data_key_reuse_period_seconds = 300

  tags = {
    "qbill:role" = "sweep-dead-letter"
  }
}

resource "aws_sqs_queue" "sweep" {
  name = local.sweep_queue_name
  # A task older than a day belongs to a sweep long superseded by the next ones.
  message_retention_seconds = 86400

  # Six times the sweeper's timeout, as for the request queue (AWS's guidance for Lambda).
  visibility_timeout_seconds = 6 * var.sweeper_timeout_seconds

  kms_master_key_id                 = aws_kms_key.sqs.arn
  kms_data_key_reuse_period_seconds = 300

  redrive_policy = jsonencode({
    deadLetterTargetArn = aws_sqs_queue.sweep_dlq.arn
    maxReceiveCount     = 3
  })

  tags = {
    "qbill:role" = "sweep"
  }
}

# Only the sweep queue may use the sweep DLQ as its dead-letter target.
resource "aws_sqs_queue_redrive_allow_policy" "sweep_dlq" {
  queue_url = aws_sqs_queue.sweep_dlq.id

  redrive_allow_policy = jsonencode({
    redrivePermission = "byQueue"
    sourceQueueArns   = [aws_sqs_queue.sweep.arn]
  })
}

# ---------------------------------------------------------------------------------------------
# The function
# ---------------------------------------------------------------------------------------------

resource "aws_cloudwatch_log_group" "sweeper" {
  #checkov:skip=CKV_AWS_338:Operational logs; retention is the operator's log_retention_days (default 30), as for the worker's.
  name              = local.sweeper_log_group
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.data.arn
}

resource "aws_lambda_function" "sweeper" {
  #checkov:skip=CKV_AWS_115:Concurrency is capped by the sweep queue's event source mapping (sweep_max_concurrency) plus the one scheduled fan-out; reserving concurrency would carve capacity out of the account pool, which a new account (limit 10, all unreservable) cannot give.
  #checkov:skip=CKV_AWS_272:The package is built from source by scripts/package-lambda and pinned by source_code_hash; this stack has no Signer profile to verify against.
  function_name = local.sweeper_function_name
  description   = "qbill sweeper: deletes idle, empty reply queues ${local.reply_queue_prefix}*, shard by shard through ${local.sweep_queue_name}"
  role          = aws_iam_role.sweeper.arn

  runtime          = "provided.al2023"
  handler          = "bootstrap"
  filename         = var.lambda_package
  source_code_hash = filebase64sha256(var.lambda_package)
  architectures    = [var.lambda_architecture]
  timeout          = var.sweeper_timeout_seconds
  memory_size      = var.sweeper_memory_mb

  kms_key_arn = aws_kms_key.data.arn

  vpc_config {
    subnet_ids         = aws_subnet.private[*].id
    security_group_ids = [aws_security_group.sweeper.id]
  }

  tracing_config {
    mode = var.lambda_tracing_mode
  }

  # As the worker's (lambda.tf).
  logging_config {
    log_format            = local.lambda_log_format
    log_group             = local.sweeper_log_group
    application_log_level = local.lambda_application_log_level
    system_log_level      = local.lambda_system_log_level
  }

  # The scheduled fan-out is invoked asynchronously: if it fails every retry, the event lands
  # in the sweep DLQ, whose alarm says so.
  dead_letter_config {
    target_arn = aws_sqs_queue.sweep_dlq.arn
  }

  environment {
    variables = {
      QBILL_FUNCTION                = "sweeper"
      QBILL_REPLY_QUEUE_PREFIX      = local.reply_queue_prefix
      QBILL_REPLY_RETENTION_SECONDS = tostring(var.reply_retention_seconds)
      QBILL_REPLY_IDLE_SECONDS      = tostring(var.reply_idle_seconds)
      QBILL_SWEEP_QUEUE             = aws_sqs_queue.sweep.url
      REDIS_URL                     = local.redis_url
      QBILL_REDIS_AUTH_SECRET_ARN   = aws_secretsmanager_secret.redis_auth.arn
      QBILL_METRICS_NAMESPACE       = var.name
    }
  }

  depends_on = [
    aws_iam_role_policy.sweeper,
    aws_cloudwatch_log_group.sweeper,
  ]
}

resource "aws_lambda_event_source_mapping" "sweep" {
  event_source_arn = aws_sqs_queue.sweep.arn
  function_name    = aws_lambda_function.sweeper.arn
  enabled          = true

  # One shard task per invocation: the function spends its time budget on that shard's pages.
  batch_size              = 1
  function_response_types = ["ReportBatchItemFailures"]

  scaling_config {
    maximum_concurrency = var.sweep_max_concurrency
  }

  depends_on = [
    aws_iam_role_policy.sweeper,
    aws_vpc_endpoint.interface,
  ]
}

# The schedule: {"qbill": "sweep"} to the sweeper, which fans out the shards.
resource "aws_cloudwatch_event_rule" "sweep" {
  name                = "${var.name}-reply-sweep"
  description         = "Deletes idle, empty qbill reply queues"
  schedule_expression = var.reply_sweep_schedule
}

resource "aws_cloudwatch_event_target" "sweep" {
  rule  = aws_cloudwatch_event_rule.sweep.name
  arn   = aws_lambda_function.sweeper.arn
  input = jsonencode({ qbill = "sweep" })
}

resource "aws_lambda_permission" "sweep" {
  statement_id  = "AllowReplySweepSchedule"
  action        = "lambda:InvokeFunction"
  function_name = aws_lambda_function.sweeper.function_name
  principal     = "events.amazonaws.com"
  source_arn    = aws_cloudwatch_event_rule.sweep.arn
}

# ---------------------------------------------------------------------------------------------
# Its role: list the account's queues (ListQueues has no queue resource), read and delete reply
# queues, work the sweep queue, read the Redis AUTH token. Nothing of the database, mail or
# documents.
# ---------------------------------------------------------------------------------------------

resource "aws_iam_role" "sweeper" {
  name               = "${var.name}-sweeper"
  description        = "qbill sweeper: lists, reads and deletes reply queues; the sweep queue; the Redis AUTH token"
  assume_role_policy = data.aws_iam_policy_document.worker_assume.json
}

data "aws_iam_policy_document" "sweeper" {
  statement {
    sid       = "WriteOwnLogs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.sweeper.arn}:*"]
  }

  # Describe calls support no resource-level permissions.
  statement {
    sid       = "DescribeVpcNetworkInterfaces"
    actions   = ["ec2:DescribeNetworkInterfaces", "ec2:DescribeSubnets"]
    resources = ["*"]
  }

  statement {
    sid     = "CreateNetworkInterfacesInThePrivateSubnets"
    actions = ["ec2:CreateNetworkInterface"]
    resources = concat(
      ["arn:${local.partition}:ec2:${local.region}:${local.account_id}:network-interface/*"],
      aws_subnet.private[*].arn,
      [aws_security_group.sweeper.arn],
    )
  }

  statement {
    sid = "ManageNetworkInterfaces"
    actions = [
      "ec2:DeleteNetworkInterface",
      "ec2:AssignPrivateIpAddresses",
      "ec2:UnassignPrivateIpAddresses",
    ]
    resources = ["arn:${local.partition}:ec2:${local.region}:${local.account_id}:network-interface/*"]
  }

  statement {
    sid       = "WriteTraces"
    actions   = ["xray:PutTraceSegments", "xray:PutTelemetryRecords"]
    resources = ["*"]
  }

  statement {
    sid       = "ListReplyQueues"
    actions   = ["sqs:ListQueues"]
    resources = [local.account_queues_arn]
  }

  statement {
    sid       = "ExamineAndDeleteReplyQueues"
    actions   = ["sqs:GetQueueAttributes", "sqs:DeleteQueue"]
    resources = [local.reply_queue_arn_pattern]
  }

  # Sends the shard tasks and their continuations; the event source mapping polls with this
  # role. The sweep DLQ receives the scheduled event if its asynchronous invocation fails.
  statement {
    sid = "WorkTheSweepQueue"
    actions = [
      "sqs:SendMessage",
      "sqs:ReceiveMessage",
      "sqs:DeleteMessage",
      "sqs:GetQueueAttributes",
      "sqs:ChangeMessageVisibility",
    ]
    resources = [aws_sqs_queue.sweep.arn]
  }

  statement {
    sid       = "DeadLetterTheScheduledEvent"
    actions   = ["sqs:SendMessage"]
    resources = [aws_sqs_queue.sweep_dlq.arn]
  }

  statement {
    sid       = "UseTheSweepQueueKey"
    actions   = ["kms:GenerateDataKey", "kms:Decrypt"]
    resources = [aws_kms_key.sqs.arn]

    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = ["sqs.${local.region}.amazonaws.com"]
    }
  }

  statement {
    sid       = "ReadTheRedisAuthToken"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = [aws_secretsmanager_secret.redis_auth.arn]
  }

  statement {
    sid       = "DecryptSecretsAndEnvironment"
    actions   = ["kms:Decrypt"]
    resources = [aws_kms_key.data.arn]

    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values = [
        "secretsmanager.${local.region}.amazonaws.com",
        "lambda.${local.region}.amazonaws.com",
      ]
    }
  }
}

resource "aws_iam_role_policy" "sweeper" {
  name   = "qbill-sweeper"
  role   = aws_iam_role.sweeper.id
  policy = data.aws_iam_policy_document.sweeper.json
}

# ---------------------------------------------------------------------------------------------
# Alarms: the sweeper failing, and tasks (or the scheduled event) dead-lettered.
# ---------------------------------------------------------------------------------------------

resource "aws_cloudwatch_metric_alarm" "sweeper_errors" {
  alarm_name          = "${var.name}-sweeper-errors"
  alarm_description   = "The qbill sweeper failed invocations: idle reply queues are not being deleted and pile up. See its log group ${local.sweeper_log_group}."
  namespace           = "AWS/Lambda"
  metric_name         = "Errors"
  dimensions          = { FunctionName = aws_lambda_function.sweeper.function_name }
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 1
  comparison_operator = "GreaterThanThreshold"
  threshold           = 0
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
}

resource "aws_cloudwatch_metric_alarm" "sweep_dlq_not_empty" {
  alarm_name          = "${var.name}-sweep-dlq-not-empty"
  alarm_description   = "Sweep tasks failed 3 times (or the scheduled sweep failed) and were dead-lettered to ${local.sweep_dlq_name}: that part of the sweep did not run. Inspect them and the sweeper's logs."
  namespace           = "AWS/SQS"
  metric_name         = "ApproximateNumberOfMessagesVisible"
  dimensions          = { QueueName = aws_sqs_queue.sweep_dlq.name }
  statistic           = "Maximum"
  period              = 300
  evaluation_periods  = 1
  comparison_operator = "GreaterThanThreshold"
  threshold           = 0
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
}
