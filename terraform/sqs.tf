# The shared request queue (API Gateway -> worker), its dead-letter queue, the alarms on both,
# and the TLS-only policy of every queue the stack creates (the sweep queues are in sweeper.tf).
# Reply queues are not managed here: the worker creates them on demand as
# <reply_queue_prefix><client uuid>, untagged, with MessageRetentionPeriod =
# QBILL_REPLY_RETENTION_SECONDS and the same TLS-only policy (QBILL_REPLY_QUEUE_ARN_PREFIX); SQS
# encrypts new queues with SSE-SQS by default.

resource "aws_sqs_queue" "requests_dlq" {
  name                      = local.dlq_name
  message_retention_seconds = var.dlq_retention_seconds

  kms_master_key_id                 = aws_kms_key.sqs.arn
  kms_data_key_reuse_period_seconds = 300

  tags = {
    "qbill:role" = "dead-letter"
  }
}

resource "aws_sqs_queue" "requests" {
  name                      = local.request_queue_name
  message_retention_seconds = var.request_retention_seconds

  # A message is handed to one worker invocation at a time: six times the function timeout
  # leaves room for the event source mapping's retries and batching window (AWS guidance).
  visibility_timeout_seconds = 6 * var.lambda_timeout_seconds

  kms_master_key_id                 = aws_kms_key.sqs.arn
  kms_data_key_reuse_period_seconds = 300

  redrive_policy = jsonencode({
    deadLetterTargetArn = aws_sqs_queue.requests_dlq.arn
    maxReceiveCount     = var.max_receive_count
  })

  tags = {
    "qbill:role" = "requests"
  }
}

# Only the request queue may use the DLQ as its dead-letter target.
resource "aws_sqs_queue_redrive_allow_policy" "requests_dlq" {
  queue_url = aws_sqs_queue.requests_dlq.id

  redrive_allow_policy = jsonencode({
    redrivePermission = "byQueue"
    sourceQueueArns   = [aws_sqs_queue.requests.arn]
  })
}

# ---------------------------------------------------------------------------------------------
# Every queue of the stack refuses requests that do not come over TLS. The roles' own policies
# grant the rest.
# ---------------------------------------------------------------------------------------------

locals {
  stack_queues = {
    requests  = aws_sqs_queue.requests
    dlq       = aws_sqs_queue.requests_dlq
    sweep     = aws_sqs_queue.sweep
    sweep_dlq = aws_sqs_queue.sweep_dlq
  }
}

data "aws_iam_policy_document" "queue_tls_only" {
  for_each = local.stack_queues

  statement {
    sid       = "DenyInsecureTransport"
    effect    = "Deny"
    actions   = ["sqs:*"]
    resources = [each.value.arn]

    principals {
      type        = "*"
      identifiers = ["*"]
    }

    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
}

resource "aws_sqs_queue_policy" "tls_only" {
  for_each = local.stack_queues

  queue_url = each.value.id
  policy    = data.aws_iam_policy_document.queue_tls_only[each.key].json
}

# ---------------------------------------------------------------------------------------------
# Alarms (the functions' and the API's are in monitoring.tf)
# ---------------------------------------------------------------------------------------------

resource "aws_sns_topic" "alarms" {
  count = var.alarm_topic_enabled ? 1 : 0

  name              = "${var.name}-alarms"
  kms_master_key_id = aws_kms_key.data.arn
}

resource "aws_sns_topic_subscription" "alarm_email" {
  count = var.alarm_topic_enabled && var.alarm_email != null ? 1 : 0

  topic_arn = aws_sns_topic.alarms[0].arn
  protocol  = "email"
  endpoint  = var.alarm_email
}

resource "aws_cloudwatch_metric_alarm" "dlq_not_empty" {
  alarm_name          = "${var.name}-requests-dlq-not-empty"
  alarm_description   = "Requests failed ${var.max_receive_count} times and were dead-lettered to ${local.dlq_name}. Inspect them, fix the cause, then redrive."
  namespace           = "AWS/SQS"
  metric_name         = "ApproximateNumberOfMessagesVisible"
  dimensions          = { QueueName = aws_sqs_queue.requests_dlq.name }
  statistic           = "Maximum"
  period              = 60
  evaluation_periods  = 1
  comparison_operator = "GreaterThanThreshold"
  threshold           = 0
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
}

resource "aws_cloudwatch_metric_alarm" "request_backlog_age" {
  alarm_name          = "${var.name}-requests-oldest-message-age"
  alarm_description   = "The oldest request on ${local.request_queue_name} waits longer than ${var.request_age_alarm_threshold_seconds} s: the workers do not keep up (raise worker_max_concurrency) or are failing."
  namespace           = "AWS/SQS"
  metric_name         = "ApproximateAgeOfOldestMessage"
  dimensions          = { QueueName = aws_sqs_queue.requests.name }
  statistic           = "Maximum"
  period              = 60
  evaluation_periods  = 3
  comparison_operator = "GreaterThanThreshold"
  threshold           = var.request_age_alarm_threshold_seconds
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
}
