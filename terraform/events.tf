# Events: what happened to the providers' bills and money (docs/events.md). The worker delivers
# the providers' webhooks and puts every event on the stack's bus, from the database's outbox,
# when EventBridge invokes it with {"qbill": "events"}; AWS-native consumers subscribe to the bus
# with rules of their own (source "qbill", detail-type the event's type).

resource "aws_cloudwatch_event_bus" "events" {
  name = "${var.name}-events"
}

resource "aws_cloudwatch_event_rule" "events" {
  name                = "${var.name}-events"
  description         = "Delivers the providers' webhooks and puts events on the bus"
  schedule_expression = var.events_schedule
}

resource "aws_cloudwatch_event_target" "events" {
  rule  = aws_cloudwatch_event_rule.events.name
  arn   = aws_lambda_function.worker.arn
  input = jsonencode({ qbill = "events" })
}

resource "aws_lambda_permission" "events" {
  statement_id  = "AllowEventsSchedule"
  action        = "lambda:InvokeFunction"
  function_name = aws_lambda_function.worker.function_name
  principal     = "events.amazonaws.com"
  source_arn    = aws_cloudwatch_event_rule.events.arn
}

# A delivery given up after 3 days of failures disables its endpoint (and mails the provider):
# the operator hears of it too.
resource "aws_cloudwatch_metric_alarm" "webhooks_given_up" {
  alarm_name          = "${var.name}-webhooks-given-up"
  alarm_description   = "A provider's webhook deliveries failed for 3 days and its endpoint was disabled; see docs/events.md, \"Retries, disabled endpoints and replay\"."
  namespace           = var.name
  metric_name         = "qbill_webhook_deliveries_total"
  dimensions          = { function = "worker", outcome = "given_up" }
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 1
  comparison_operator = "GreaterThanThreshold"
  threshold           = 0
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
}
