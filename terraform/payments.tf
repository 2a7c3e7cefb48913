# Card payments through Stripe (docs/payments.md): the keys in a secret only the worker reads, the
# way out of the private subnets to api.stripe.com, the two jobs that ask the processor what its
# webhooks did not say, and an alarm on every difference between the processor and the books.
#
# The secret is JSON {"secret_key", "webhook_secret", "previous_webhook_secret"} from the
# variables stripe_secret_key and stripe_webhook_secret(s), encrypted with the stack's data key;
# the worker reads it once at start (QBILL_STRIPE_SECRET_ARN) and never logs it. Rotating the
# webhook signing secret: add the new endpoint secret in Stripe's dashboard, set
# stripe_previous_webhook_secret to the old one and stripe_webhook_secret to the new, apply (the
# worker accepts both), then, once Stripe signs with the new one only, empty the previous and
# apply again. Rotating the API key: roll it in the dashboard (Stripe keeps the old one working for
# the hours you choose), set stripe_secret_key, apply; new workers read the new key at start.

resource "aws_secretsmanager_secret" "stripe" {
  #checkov:skip=CKV2_AWS_57:Stripe issues the keys: they are rolled in Stripe's dashboard and set through Terraform (see above), which a Secrets Manager rotation Lambda could not do.
  name                    = "${var.name}/stripe"
  description             = "qbill: Stripe secret key and webhook signing secrets, JSON {secret_key, webhook_secret, previous_webhook_secret}"
  kms_key_id              = aws_kms_key.data.arn
  recovery_window_in_days = var.secret_recovery_window_days
}

resource "aws_secretsmanager_secret_version" "stripe" {
  secret_id = aws_secretsmanager_secret.stripe.id
  secret_string = jsonencode({
    secret_key              = var.stripe_secret_key
    webhook_secret          = var.stripe_webhook_secret
    previous_webhook_secret = var.stripe_previous_webhook_secret == "" ? null : var.stripe_previous_webhook_secret
  })
}

# The card payments that waited too long are asked about (settled or cancelled), every few minutes.
resource "aws_cloudwatch_event_rule" "expire_payments" {
  name                = "${var.name}-expire-payments"
  description         = "Settles or cancels the qbill card payments that waited on the processor for 30 minutes"
  schedule_expression = var.expire_payments_schedule
}

resource "aws_cloudwatch_event_target" "expire_payments" {
  rule  = aws_cloudwatch_event_rule.expire_payments.name
  arn   = aws_lambda_function.worker.arn
  input = jsonencode({ qbill = "expire-payments" })
}

resource "aws_lambda_permission" "expire_payments" {
  statement_id  = "AllowExpirePaymentsSchedule"
  action        = "lambda:InvokeFunction"
  function_name = aws_lambda_function.worker.function_name
  principal     = "events.amazonaws.com"
  source_arn    = aws_cloudwatch_event_rule.expire_payments.arn
}

# The processor's intents of the last three days side by side with the books: a lost webhook is
# healed, anything else is a discrepancy (the alarm below).
resource "aws_cloudwatch_event_rule" "reconcile" {
  name                = "${var.name}-reconcile"
  description         = "Reconciles the payments processor's intents with the qbill books"
  schedule_expression = var.reconcile_schedule
}

resource "aws_cloudwatch_event_target" "reconcile" {
  rule  = aws_cloudwatch_event_rule.reconcile.name
  arn   = aws_lambda_function.worker.arn
  input = jsonencode({ qbill = "reconcile" })
}

resource "aws_lambda_permission" "reconcile" {
  statement_id  = "AllowReconcileSchedule"
  action        = "lambda:InvokeFunction"
  function_name = aws_lambda_function.worker.function_name
  principal     = "events.amazonaws.com"
  source_arn    = aws_cloudwatch_event_rule.reconcile.arn
}

# Each UTC day that is over, closed once into every provider's settlements (what it is owed:
# payments, refunds, the processor's fees). Daily, a quarter past midnight; a run that finds the
# processor unreachable leaves the day for the next run, and any run closes every day still open.
resource "aws_cloudwatch_event_rule" "settle" {
  name                = "${var.name}-settle"
  description         = "Closes the days that are over into the providers' settlements"
  schedule_expression = var.settle_schedule
}

resource "aws_cloudwatch_event_target" "settle" {
  rule  = aws_cloudwatch_event_rule.settle.name
  arn   = aws_lambda_function.worker.arn
  input = jsonencode({ qbill = "settle" })
}

resource "aws_lambda_permission" "settle" {
  statement_id  = "AllowSettleSchedule"
  action        = "lambda:InvokeFunction"
  function_name = aws_lambda_function.worker.function_name
  principal     = "events.amazonaws.com"
  source_arn    = aws_cloudwatch_event_rule.settle.arn
}

# Every kind of difference the books could not take (processor::book, processor::refund, jobs::reconcile): one alarm
# each, on the worker's EMF metric (dimensions: the function and the kind).
resource "aws_cloudwatch_metric_alarm" "payment_discrepancies" {
  for_each = toset([
    "amount_differs",
    "captured_after_release",
    "captured_twice",
    "captured_unknown",
    "refund_amount_differs",
    "refund_differs",
    "refund_failed_after_success",
    "refund_unknown",
    "refund_without_processor",
    "settled_without_capture",
  ])

  alarm_name          = "${var.name}-payment-discrepancy-${replace(each.key, "_", "-")}"
  alarm_description   = "The payments processor and the qbill books differ (${each.key}); nothing was changed. Run `qbill payments discrepancies` and see docs/payments.md, \"When reconcile reports a difference\"."
  namespace           = var.name
  metric_name         = "qbill_payment_discrepancies_total"
  dimensions          = { function = "worker", kind = each.key }
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 1
  comparison_operator = "GreaterThanThreshold"
  threshold           = 0
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
}
