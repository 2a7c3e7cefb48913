# What an operator watches: one CloudWatch dashboard (the dashboard_url output) and the alarms
# on the functions and the API. The queues' alarms are in sqs.tf and sweeper.tf; every alarm
# notifies local.alarm_actions (the alarm topic, with alarm_topic_enabled, and alarm_actions).
#
# The workers' own metrics are CloudWatch embedded metric format (EMF) lines in their logs, in
# the namespace var.name (QBILL_METRICS_NAMESPACE), labels as dimensions; the dashboard finds
# them with SEARCH expressions, so a new kind or outcome shows up by itself.

locals {
  dashboard_name = var.name

  # The console's address for the partition (GovCloud has a console of its own).
  console_url = local.partition == "aws-us-gov" ? "https://console.amazonaws-us-gov.com" : "https://${local.region}.console.aws.amazon.com"

  # An EMF metric of the workers, every dimension set it is published with.
  emf_search = {
    for metric, stat in {
      qbill_replies_total      = "Sum"
      qbill_messages_total     = "Sum"
      qbill_dead_letters_total = "Sum"
      qbill_handler_seconds    = "p99"
      qbill_cache_total        = "Sum"
      qbill_sweep_queues_total = "Sum"
    } : metric => "SEARCH('Namespace=\"${var.name}\" MetricName=\"${metric}\"', '${stat}', 300)"
  }

  # One row of the dashboard is 24 units wide; each widget here is a third of it.
  dashboard_widgets = [
    for index, widget in [
      {
        title = "Request queue: waiting, in flight"
        stat  = "Maximum"
        metrics = [
          ["AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", local.request_queue_name, { label = "waiting" }],
          ["AWS/SQS", "ApproximateNumberOfMessagesNotVisible", "QueueName", local.request_queue_name, { label = "in flight" }],
        ]
      },
      {
        title = "Oldest message age (s)"
        stat  = "Maximum"
        metrics = [
          ["AWS/SQS", "ApproximateAgeOfOldestMessage", "QueueName", local.request_queue_name, { label = "requests" }],
          ["AWS/SQS", "ApproximateAgeOfOldestMessage", "QueueName", local.sweep_queue_name, { label = "sweep tasks" }],
        ]
      },
      {
        title = "Dead-letter queues"
        stat  = "Maximum"
        metrics = [
          ["AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", local.dlq_name, { label = "requests DLQ" }],
          ["AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", local.sweep_dlq_name, { label = "sweep DLQ" }],
        ]
      },
      {
        title = "Lambda concurrency"
        stat  = "Maximum"
        metrics = [
          ["AWS/Lambda", "ConcurrentExecutions", "FunctionName", local.worker_function_name, { label = "worker" }],
          ["AWS/Lambda", "ConcurrentExecutions", "FunctionName", local.sweeper_function_name, { label = "sweeper" }],
          ["AWS/Lambda", "ConcurrentExecutions", { label = "whole account" }],
        ]
      },
      {
        title = "Lambda errors and throttles"
        stat  = "Sum"
        metrics = [
          ["AWS/Lambda", "Errors", "FunctionName", local.worker_function_name, { label = "worker errors" }],
          ["AWS/Lambda", "Throttles", "FunctionName", local.worker_function_name, { label = "worker throttles" }],
          ["AWS/Lambda", "Errors", "FunctionName", local.sweeper_function_name, { label = "sweeper errors" }],
          ["AWS/Lambda", "Throttles", "FunctionName", local.sweeper_function_name, { label = "sweeper throttles" }],
        ]
      },
      {
        title = "Lambda duration (ms)"
        stat  = "p99"
        metrics = [
          ["AWS/Lambda", "Duration", "FunctionName", local.worker_function_name, { label = "worker p99" }],
          ["AWS/Lambda", "Duration", "FunctionName", local.worker_function_name, { label = "worker p50", stat = "p50" }],
          ["AWS/Lambda", "Duration", "FunctionName", local.sweeper_function_name, { label = "sweeper p99" }],
        ]
      },
      {
        title = "API Gateway: 4XX, 5XX"
        stat  = "Sum"
        metrics = [
          ["AWS/ApiGateway", "4XXError", "ApiName", var.name, "Stage", var.stage_name, { label = "4XX" }],
          ["AWS/ApiGateway", "5XXError", "ApiName", var.name, "Stage", var.stage_name, { label = "5XX" }],
        ]
      },
      {
        title = "API Gateway latency (ms)"
        stat  = "p99"
        metrics = [
          ["AWS/ApiGateway", "Latency", "ApiName", var.name, "Stage", var.stage_name, { label = "p99" }],
          ["AWS/ApiGateway", "Latency", "ApiName", var.name, "Stage", var.stage_name, { label = "p50", stat = "p50" }],
        ]
      },
      {
        title = "PostgreSQL: CPU (%), connections"
        stat  = "Maximum"
        metrics = [
          ["AWS/RDS", "CPUUtilization", "DBInstanceIdentifier", var.name, { label = "CPU %" }],
          ["AWS/RDS", "DatabaseConnections", "DBInstanceIdentifier", var.name, { label = "connections", yAxis = "right" }],
        ]
      },
      {
        title = "PostgreSQL commit latency (ms)"
        stat  = "Average"
        metrics = [
          ["AWS/RDS", "CommitLatency", "DBInstanceIdentifier", var.name, { label = "commit latency" }],
        ]
      },
      {
        title = "Redis: hits, misses"
        stat  = "Sum"
        metrics = [
          [{ expression = "SEARCH('{AWS/ElastiCache,CacheClusterId} MetricName=\"CacheHits\" \"${var.name}-redis\"', 'Sum', 300)", id = "hits", label = "hits" }],
          [{ expression = "SEARCH('{AWS/ElastiCache,CacheClusterId} MetricName=\"CacheMisses\" \"${var.name}-redis\"', 'Sum', 300)", id = "misses", label = "misses" }],
        ]
      },
      {
        title   = "Replies by kind and outcome (qbill_replies_total)"
        stat    = "Sum"
        metrics = [[{ expression = local.emf_search.qbill_replies_total, id = "replies", label = "" }]]
      },
      {
        title   = "Handler time p99 by kind (qbill_handler_seconds)"
        stat    = "p99"
        metrics = [[{ expression = local.emf_search.qbill_handler_seconds, id = "handler", label = "" }]]
      },
      {
        title = "Messages by disposition, dead letters"
        stat  = "Sum"
        metrics = [
          [{ expression = local.emf_search.qbill_messages_total, id = "messages", label = "" }],
          [{ expression = local.emf_search.qbill_dead_letters_total, id = "dead", label = "dead letters" }],
        ]
      },
      {
        title = "Cache results, reply queues swept"
        stat  = "Sum"
        metrics = [
          [{ expression = local.emf_search.qbill_cache_total, id = "cache", label = "" }],
          [{ expression = local.emf_search.qbill_sweep_queues_total, id = "sweep", label = "" }],
        ]
      },
      ] : {
      type   = "metric"
      x      = (index % 3) * 8
      y      = floor(index / 3) * 6
      width  = 8
      height = 6
      properties = {
        title   = widget.title
        region  = local.region
        view    = "timeSeries"
        stacked = false
        period  = 300
        stat    = widget.stat
        metrics = widget.metrics
      }
    }
  ]
}

resource "aws_cloudwatch_dashboard" "qbill" {
  dashboard_name = local.dashboard_name
  dashboard_body = jsonencode({ widgets = local.dashboard_widgets })
}

# ---------------------------------------------------------------------------------------------
# Alarms
# ---------------------------------------------------------------------------------------------

# Whole invocations that fail (a crash, a timeout, an error before the worker reported its
# per-message failures), as a share of all invocations: a busy worker's rare timeout is not an
# alarm, a failing one is.
resource "aws_cloudwatch_metric_alarm" "worker_errors" {
  alarm_name          = "${var.name}-worker-error-rate"
  alarm_description   = "More than ${var.worker_error_rate_alarm_percent}% of the qbill worker's invocations failed whole in 5 minutes (crash, timeout, or an error before it reported per-message failures). See ${local.worker_log_group}."
  comparison_operator = "GreaterThanThreshold"
  threshold           = var.worker_error_rate_alarm_percent
  evaluation_periods  = 1
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions

  metric_query {
    id          = "rate"
    expression  = "IF(invocations > 0, 100 * errors / invocations, 0)"
    label       = "failed invocations (%)"
    return_data = true
  }

  metric_query {
    id = "errors"

    metric {
      namespace   = "AWS/Lambda"
      metric_name = "Errors"
      dimensions  = { FunctionName = aws_lambda_function.worker.function_name }
      stat        = "Sum"
      period      = 300
    }
  }

  metric_query {
    id = "invocations"

    metric {
      namespace   = "AWS/Lambda"
      metric_name = "Invocations"
      dimensions  = { FunctionName = aws_lambda_function.worker.function_name }
      stat        = "Sum"
      period      = 300
    }
  }
}

# A throttled worker leaves requests waiting; a throttled sweeper leaves its tasks on the queue.
resource "aws_cloudwatch_metric_alarm" "throttles" {
  for_each = {
    worker  = aws_lambda_function.worker.function_name
    sweeper = aws_lambda_function.sweeper.function_name
  }

  alarm_name          = "${var.name}-${each.key}-throttles"
  alarm_description   = "Lambda throttled the qbill ${each.key} in the last 5 minutes: the account's concurrency (or the function's reserved concurrency) is exhausted."
  namespace           = "AWS/Lambda"
  metric_name         = "Throttles"
  dimensions          = { FunctionName = each.value }
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 1
  comparison_operator = "GreaterThanThreshold"
  threshold           = 0
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
}

# 5XX: the gateway could not enqueue a request or read a reply queue (or WAF/API Gateway failed).
resource "aws_cloudwatch_metric_alarm" "api_5xx" {
  alarm_name          = "${var.name}-api-5xx"
  alarm_description   = "The qbill API answered more than ${var.api_5xx_alarm_threshold} 5XX responses in 5 minutes: requests could not be enqueued or reply queues not read. See the stage's access log ${aws_cloudwatch_log_group.api_access.name}."
  namespace           = "AWS/ApiGateway"
  metric_name         = "5XXError"
  dimensions          = { ApiName = aws_api_gateway_rest_api.qbill.name, Stage = aws_api_gateway_stage.qbill.stage_name }
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 1
  comparison_operator = "GreaterThanThreshold"
  threshold           = var.api_5xx_alarm_threshold
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
}
