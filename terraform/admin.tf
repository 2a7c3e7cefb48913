# The admin function: the same package as the worker, QBILL_FUNCTION=admin. It runs the
# migrations ({"qbill": "migrate"}) and creates the first operator ({"qbill": "create-operator"}),
# both as the database master user, and nothing else: an operator invokes it with
# `aws lambda invoke`; no event source, no schedule, no queue reaches it. So the internet-facing
# worker holds neither the master secret nor the first operator's password.

resource "aws_cloudwatch_log_group" "admin" {
  name              = local.admin_log_group
  retention_in_days = var.audit_log_retention_days # every run changes the schema or the operators
  kms_key_id        = aws_kms_key.data.arn
}

resource "aws_lambda_function" "admin" {
  #checkov:skip=CKV_AWS_116:Invoked synchronously by an operator (aws lambda invoke), who sees the error; there is no asynchronous invocation whose event could be dead-lettered.
  #checkov:skip=CKV_AWS_115:Invoked by hand, and migrations take an advisory lock; reserving concurrency would carve capacity out of the account pool, which a new account (limit 10, all unreservable) cannot give.
  #checkov:skip=CKV_AWS_272:The package is built from source by scripts/package-lambda and pinned by source_code_hash; this stack has no Signer profile to verify against.
  function_name = local.admin_function_name
  description   = "qbill admin: migrations and the first operator, as the database master user (invoked by an operator only)"
  role          = aws_iam_role.admin.arn

  runtime          = "provided.al2023"
  handler          = "bootstrap"
  filename         = var.lambda_package
  source_code_hash = filebase64sha256(var.lambda_package)
  architectures    = [var.lambda_architecture]
  timeout          = var.admin_timeout_seconds
  memory_size      = var.lambda_memory_mb

  kms_key_arn = aws_kms_key.data.arn

  vpc_config {
    subnet_ids         = aws_subnet.private[*].id
    security_group_ids = [aws_security_group.admin.id]
  }

  tracing_config {
    mode = var.lambda_tracing_mode
  }

  # As the worker's (lambda.tf).
  logging_config {
    log_format            = local.lambda_log_format
    log_group             = local.admin_log_group
    application_log_level = local.lambda_application_log_level
    system_log_level      = local.lambda_system_log_level
  }

  environment {
    variables = {
      QBILL_FUNCTION                     = "admin"
      QBILL_DATABASE_AUTH                = var.database_auth
      QBILL_DATABASE_HOST                = local.database_host
      QBILL_DATABASE_PORT                = "5432"
      QBILL_DATABASE_NAME                = var.database_name
      QBILL_DATABASE_USER                = var.database_user
      QBILL_DATABASE_CA_BUNDLE           = "/var/task/rds-global-bundle.pem"
      QBILL_DATABASE_PASSWORD_SECRET_ARN = aws_secretsmanager_secret.database_password.arn
      QBILL_DATABASE_MASTER_SECRET_ARN   = aws_db_instance.qbill.master_user_secret[0].secret_arn
      QBILL_OPERATOR_SECRET_ARN          = aws_secretsmanager_secret.first_operator.arn
    }
  }

  depends_on = [
    aws_iam_role_policy.admin,
    aws_cloudwatch_log_group.admin,
  ]
}

# ---------------------------------------------------------------------------------------------
# Its role: logs, network interfaces, traces, and three secrets. No SQS, SES, S3 or Redis.
# ---------------------------------------------------------------------------------------------

resource "aws_iam_role" "admin" {
  name               = "${var.name}-admin"
  description        = "qbill admin function: the database master secret, the first operator, the app login's password"
  assume_role_policy = data.aws_iam_policy_document.worker_assume.json
}

data "aws_iam_policy_document" "admin" {
  statement {
    sid       = "WriteOwnLogs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.admin.arn}:*"]
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
      [aws_security_group.admin.arn],
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

  # The master user's secret (RDS keeps it), the first operator's, and the app login's password
  # (migrate sets it with database_auth = "secret").
  statement {
    sid     = "ReadTheAdministrationSecrets"
    actions = ["secretsmanager:GetSecretValue"]
    resources = [
      aws_db_instance.qbill.master_user_secret[0].secret_arn,
      aws_secretsmanager_secret.first_operator.arn,
      aws_secretsmanager_secret.database_password.arn,
    ]
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

resource "aws_iam_role_policy" "admin" {
  name   = "qbill-admin"
  role   = aws_iam_role.admin.id
  policy = data.aws_iam_policy_document.admin.json
}
