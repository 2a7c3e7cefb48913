# Two customer managed keys:
#   sqs  - the request queue and its dead-letter queue. Only the gateway role (SendMessage) and
#          the worker role (receive) use it, so a key of its own keeps their grants narrow.
#   data - everything else at rest: secrets, CloudWatch log groups, the RDS instance and its
#          Performance Insights, ElastiCache, the Lambda environment, the alarm topic and the
#          documents bucket.
# Both policies delegate to IAM (the account root statement), so each role's own policy decides
# who may use a key; the data key also lets the CloudWatch Logs and CloudWatch alarm services use
# it for this account's resources only.

data "aws_iam_policy_document" "kms_sqs" {
  #checkov:skip=CKV_AWS_109:Key policy: Resource "*" is this key only, and the root statement is AWS's default one that hands access control to IAM; the roles' IAM policies (iam.tf) grant least privilege on the key.
  #checkov:skip=CKV_AWS_111:Key policy: Resource "*" is this key only, and the root statement is AWS's default one that hands access control to IAM; the roles' IAM policies (iam.tf) grant least privilege on the key.
  #checkov:skip=CKV_AWS_356:Key policy: Resource "*" is this key only (a key policy cannot name another resource); the root statement delegates to IAM policies, which name the key ARN.
  statement {
    sid       = "EnableIamPolicies"
    actions   = ["kms:*"]
    resources = ["*"] # in a key policy, "*" is the key itself

    principals {
      type        = "AWS"
      identifiers = ["arn:${local.partition}:iam::${local.account_id}:root"]
    }
  }
}

resource "aws_kms_key" "sqs" {
  description             = "${var.name}: SQS request queue and dead-letter queue"
  enable_key_rotation     = true
  deletion_window_in_days = var.kms_deletion_window_days
  policy                  = data.aws_iam_policy_document.kms_sqs.json
}

resource "aws_kms_alias" "sqs" {
  name          = "alias/${var.name}-sqs"
  target_key_id = aws_kms_key.sqs.key_id
}

data "aws_iam_policy_document" "kms_data" {
  #checkov:skip=CKV_AWS_109:Key policy: Resource "*" is this key only. The root statement is AWS's default delegation to IAM (iam.tf grants least privilege on the key); the CloudWatch Logs statement is bound to this account's log groups by encryption context.
  #checkov:skip=CKV_AWS_111:Key policy: Resource "*" is this key only. The root statement is AWS's default delegation to IAM; the service statements let CloudWatch Logs (this account's log groups, by encryption context) and CloudWatch alarms (Decrypt/GenerateDataKey, alarm topic only) use it.
  #checkov:skip=CKV_AWS_356:Key policy: Resource "*" is this key only (a key policy cannot name another resource); access is narrowed by principal, encryption context and the roles' IAM policies.
  statement {
    sid       = "EnableIamPolicies"
    actions   = ["kms:*"]
    resources = ["*"] # in a key policy, "*" is the key itself

    principals {
      type        = "AWS"
      identifiers = ["arn:${local.partition}:iam::${local.account_id}:root"]
    }
  }

  statement {
    sid = "CloudWatchLogsEncryptsThisAccountsLogGroups"
    actions = [
      "kms:Encrypt*",
      "kms:Decrypt*",
      "kms:ReEncrypt*",
      "kms:GenerateDataKey*",
      "kms:Describe*",
    ]
    resources = ["*"]

    principals {
      type        = "Service"
      identifiers = ["logs.${local.region}.amazonaws.com"]
    }

    condition {
      test     = "ArnLike"
      variable = "kms:EncryptionContext:aws:logs:arn"
      values   = ["arn:${local.partition}:logs:${local.region}:${local.account_id}:log-group:*"]
    }
  }

  # Only with the alarm topic: CloudWatch publishes alarm notifications to the encrypted topic.
  dynamic "statement" {
    for_each = var.alarm_topic_enabled ? ["alarm-topic"] : []

    content {
      sid       = "CloudWatchAlarmsPublishToTheEncryptedTopic"
      actions   = ["kms:Decrypt", "kms:GenerateDataKey*"]
      resources = ["*"]

      principals {
        type        = "Service"
        identifiers = ["cloudwatch.amazonaws.com"]
      }
    }
  }
}

resource "aws_kms_key" "data" {
  description             = "${var.name}: secrets, logs, database, cache, Lambda environment"
  enable_key_rotation     = true
  deletion_window_in_days = var.kms_deletion_window_days
  policy                  = data.aws_iam_policy_document.kms_data.json
}

resource "aws_kms_alias" "data" {
  name          = "alias/${var.name}-data"
  target_key_id = aws_kms_key.data.key_id
}
