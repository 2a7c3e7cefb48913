# The two application principals of the request path and their least-privilege policies:
#   gateway - assumed by API Gateway for the SQS service integrations (credentials: in the
#             OpenAPI document): SendMessage on the request queue, ReceiveMessage on reply queues.
#   worker  - the worker function's execution role (requests and its scheduled jobs). It can
#             create and answer reply queues, never list, examine or delete them (the sweeper's
#             role, sweeper.tf), and reads neither the database master secret nor the first
#             operator's (the admin function's role, admin.tf).
# Service roles of their own live next to what uses them (flow logs in network.tf, RDS
# monitoring and proxy in rds.tf, the API Gateway CloudWatch role in apigateway.tf).

# ---------------------------------------------------------------------------------------------
# API Gateway -> SQS
# ---------------------------------------------------------------------------------------------

data "aws_iam_policy_document" "gateway_assume" {
  statement {
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["apigateway.amazonaws.com"]
    }

    # No aws:SourceArn/aws:SourceAccount condition: API Gateway does not document them for
    # integration credentials, and the REST API's ARN would be a dependency cycle (the API's
    # document embeds this role's ARN). The role can do nothing but the two SQS calls below.
  }
}

resource "aws_iam_role" "gateway" {
  name               = "${var.name}-gateway"
  description        = "qbill API Gateway: SendMessage on the request queue, ReceiveMessage on reply queues"
  assume_role_policy = data.aws_iam_policy_document.gateway_assume.json
}

data "aws_iam_policy_document" "gateway" {
  statement {
    sid       = "EnqueueRequests"
    actions   = ["sqs:SendMessage"]
    resources = [aws_sqs_queue.requests.arn]
  }

  statement {
    sid       = "PollReplyQueues"
    actions   = ["sqs:ReceiveMessage"]
    resources = [local.reply_queue_arn_pattern]
  }

  # The request queue is encrypted with the stack's SQS key.
  statement {
    sid       = "UseTheRequestQueueKey"
    actions   = ["kms:GenerateDataKey", "kms:Decrypt"]
    resources = [aws_kms_key.sqs.arn]

    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = ["sqs.${local.region}.amazonaws.com"]
    }
  }
}

resource "aws_iam_role_policy" "gateway" {
  name   = "sqs-integrations"
  role   = aws_iam_role.gateway.id
  policy = data.aws_iam_policy_document.gateway.json
}

# ---------------------------------------------------------------------------------------------
# Lambda worker
# ---------------------------------------------------------------------------------------------

data "aws_iam_policy_document" "worker_assume" {
  statement {
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["lambda.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "worker" {
  name               = "${var.name}-worker"
  description        = "qbill Lambda worker: request queue, reply queues, database login, its secrets, mail, documents"
  assume_role_policy = data.aws_iam_policy_document.worker_assume.json
}

data "aws_iam_policy_document" "worker" {
  #checkov:skip=CKV_AWS_111:sns:Publish to a phone number names no resource; the statement PublishToNoTopic denies every topic, so "*" reaches phone numbers only.
  # --- what AWSLambdaVPCAccessExecutionRole grants, narrowed to this function ---------------

  statement {
    sid       = "WriteOwnLogs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.worker.arn}:*"]
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
      [aws_security_group.worker.arn],
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

  # X-Ray segments (lambda_tracing_mode); these actions take no resource ARN.
  statement {
    sid       = "WriteTraces"
    actions   = ["xray:PutTraceSegments", "xray:PutTelemetryRecords"]
    resources = ["*"]
  }

  # --- queues ------------------------------------------------------------------------------

  # The event source mapping polls with the function's role.
  statement {
    sid = "ConsumeTheRequestQueue"
    actions = [
      "sqs:ReceiveMessage",
      "sqs:DeleteMessage",
      "sqs:GetQueueAttributes",
      "sqs:ChangeMessageVisibility",
    ]
    resources = [aws_sqs_queue.requests.arn]
  }

  # No TagQueue: reply queues carry no tag (tagging calls have a low per-account rate; the name's
  # prefix is what marks a reply queue).
  statement {
    sid = "CreateAndAnswerReplyQueues"
    actions = [
      "sqs:CreateQueue",
      "sqs:SendMessage",
      "sqs:GetQueueUrl",
    ]
    resources = [local.reply_queue_arn_pattern]
  }

  # --- database ------------------------------------------------------------------------------

  statement {
    sid       = "DatabaseLogin"
    actions   = ["rds-db:connect"]
    resources = ["arn:${local.partition}:rds-db:${local.region}:${local.account_id}:dbuser:${local.database_connect_resource_id}/${var.database_user}"]
  }

  # --- secrets -------------------------------------------------------------------------------

  statement {
    sid     = "ReadOwnSecrets"
    actions = ["secretsmanager:GetSecretValue"]
    resources = [
      aws_secretsmanager_secret.jwt.arn,
      aws_secretsmanager_secret.redis_auth.arn,
      aws_secretsmanager_secret.database_password.arn,
      aws_secretsmanager_secret.stripe.arn,
    ]
  }

  # --- mail ----------------------------------------------------------------------------------

  # Send as the stack's one SES identity (mail.tf); in the sandbox SES checks the recipients'
  # identities too, hence the verified test recipients (mail_sandbox_recipients, usually none).
  statement {
    sid       = "SendMailAsTheSender"
    actions   = ["ses:SendEmail", "ses:SendRawEmail"]
    resources = concat([local.mail_identity_arn], [for recipient in aws_ses_email_identity.sandbox_recipient : recipient.arn])
  }

  # --- texts ---------------------------------------------------------------------------------

  # Texts a household's verified number (a code, or a notification it turned SMS on for). A
  # Publish to a phone number names no resource, so the allow is on "*"; the deny below takes
  # every topic out of it: the worker can text a number and publish to no topic.
  statement {
    sid       = "TextPhoneNumbers"
    actions   = ["sns:Publish"]
    resources = ["*"]
  }

  statement {
    sid       = "PublishToNoTopic"
    effect    = "Deny"
    actions   = ["sns:Publish"]
    resources = ["arn:${data.aws_partition.current.partition}:sns:*:*:*"]
  }

  # --- documents -----------------------------------------------------------------------------

  # Writes a rendered document, reads it back, and signs the presigned GET links that clients
  # use: S3 checks this role's rights when a link is used. Objects under documents/ only; no
  # listing, no deleting (documents.tf).
  statement {
    sid       = "PutAndGetDocuments"
    actions   = ["s3:PutObject", "s3:GetObject"]
    resources = [local.documents_object_arns]
  }

  # --- keys ----------------------------------------------------------------------------------

  statement {
    sid       = "DecryptRequestMessages"
    actions   = ["kms:Decrypt"]
    resources = [aws_kms_key.sqs.arn]

    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = ["sqs.${local.region}.amazonaws.com"]
    }
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

  # Documents are encrypted with the data key (documents.tf): S3 generates a data key when the
  # worker writes and decrypts when the worker, or a link it signed, reads. With the bucket's S3
  # Bucket Key the encryption context is the bucket's ARN; an object's own ARN is its context
  # when it is written without one.
  statement {
    sid       = "EncryptAndDecryptDocuments"
    actions   = ["kms:GenerateDataKey", "kms:Decrypt"]
    resources = [aws_kms_key.data.arn]

    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = ["s3.${local.region}.amazonaws.com"]
    }

    condition {
      test     = "StringLike"
      variable = "kms:EncryptionContext:aws:s3:arn"
      values   = [aws_s3_bucket.documents.arn, local.documents_object_arns]
    }
  }

  # --- events --------------------------------------------------------------------------------

  # Puts the providers' events on the stack's own bus (events.tf), nothing else.
  statement {
    sid       = "PutEventsOnTheStacksBus"
    actions   = ["events:PutEvents"]
    resources = [aws_cloudwatch_event_bus.events.arn]
  }
}

resource "aws_iam_role_policy" "worker" {
  name   = "qbill-worker"
  role   = aws_iam_role.worker.id
  policy = data.aws_iam_policy_document.worker.json
}
