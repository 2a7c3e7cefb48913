# PostgreSQL on RDS: private, encrypted, TLS-only, IAM database authentication on. The master
# user's password is generated and kept by RDS in Secrets Manager; the worker logs in as
# var.database_user, a role the migrations create (and grant rds_iam when the worker connects
# to the instance directly).

locals {
  db_major_version = split(".", var.db_engine_version)[0]
}

resource "aws_db_subnet_group" "qbill" {
  name        = "${var.name}-database"
  description = "qbill PostgreSQL: the private subnets"
  subnet_ids  = aws_subnet.private[*].id
}

resource "aws_db_parameter_group" "qbill" {
  name_prefix = "${var.name}-postgres${local.db_major_version}-"
  family      = "postgres${local.db_major_version}"
  description = "qbill PostgreSQL: TLS required, DDL and slow statements logged"

  parameter {
    name  = "rds.force_ssl"
    value = "1"
  }

  # Schema changes are logged; data statements are not (they carry personal data and amounts).
  parameter {
    name  = "log_statement"
    value = "ddl"
  }

  parameter {
    name  = "log_min_duration_statement"
    value = tostring(var.db_log_min_duration_ms)
  }

  parameter {
    name  = "log_connections"
    value = "1"
  }

  parameter {
    name  = "log_disconnections"
    value = "1"
  }

  lifecycle {
    create_before_destroy = true
  }
}

# RDS would create these on the first export, unencrypted and kept forever; made here instead.
resource "aws_cloudwatch_log_group" "database" {
  for_each = toset(["postgresql", "upgrade"])

  name              = "/aws/rds/instance/${var.name}/${each.key}"
  retention_in_days = var.audit_log_retention_days
  kms_key_id        = aws_kms_key.data.arn
}

data "aws_iam_policy_document" "rds_monitoring_assume" {
  statement {
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["monitoring.rds.amazonaws.com"]
    }

    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
}

resource "aws_iam_role" "rds_monitoring" {
  name               = "${var.name}-rds-monitoring"
  assume_role_policy = data.aws_iam_policy_document.rds_monitoring_assume.json
}

# The AWS managed policy is scoped to the RDSOSMetrics log group; it is what Enhanced Monitoring
# documents and needs nothing else.
resource "aws_iam_role_policy_attachment" "rds_monitoring" {
  role       = aws_iam_role.rds_monitoring.name
  policy_arn = "arn:${local.partition}:iam::aws:policy/service-role/AmazonRDSEnhancedMonitoringRole"
}

resource "aws_db_instance" "qbill" {
  identifier     = var.name
  engine         = "postgres"
  engine_version = var.db_engine_version
  instance_class = var.db_instance_class

  allocated_storage     = var.db_allocated_storage_gb
  max_allocated_storage = var.db_max_allocated_storage_gb
  storage_type          = "gp3"
  storage_encrypted     = true
  kms_key_id            = aws_kms_key.data.arn

  db_name  = var.database_name
  username = var.db_master_username
  port     = 5432

  manage_master_user_password   = true
  master_user_secret_kms_key_id = aws_kms_key.data.arn

  iam_database_authentication_enabled = true
  ca_cert_identifier                  = "rds-ca-rsa2048-g1" # in the global bundle shipped in the Lambda package

  db_subnet_group_name   = aws_db_subnet_group.qbill.name
  vpc_security_group_ids = [aws_security_group.database.id]
  publicly_accessible    = false
  multi_az               = var.db_multi_az
  parameter_group_name   = aws_db_parameter_group.qbill.name

  backup_retention_period   = var.db_backup_retention_days
  backup_window             = "02:00-03:00"
  maintenance_window        = "sun:03:30-sun:04:30"
  copy_tags_to_snapshot     = true
  deletion_protection       = var.deletion_protection
  skip_final_snapshot       = var.db_skip_final_snapshot
  final_snapshot_identifier = "${var.name}-final"
  delete_automated_backups  = false

  auto_minor_version_upgrade  = true
  allow_major_version_upgrade = false
  apply_immediately           = var.apply_immediately

  enabled_cloudwatch_logs_exports = ["postgresql", "upgrade"]

  performance_insights_enabled          = true
  performance_insights_kms_key_id       = aws_kms_key.data.arn
  performance_insights_retention_period = var.db_performance_insights_retention_days

  monitoring_interval = var.db_monitoring_interval_seconds
  monitoring_role_arn = aws_iam_role.rds_monitoring.arn

  depends_on = [
    aws_cloudwatch_log_group.database,
    aws_iam_role_policy_attachment.rds_monitoring,
  ]
}

# ---------------------------------------------------------------------------------------------
# RDS Proxy (optional). The worker authenticates to the proxy with IAM tokens (REQUIRED in the
# default database_auth = iam); the proxy logs in to PostgreSQL with the password from the
# database password secret, so with the proxy the worker's login must be a password role (the
# migrate command sets its password from that secret). The master secret is registered too,
# IAM disabled, so that the migrate command can log in through the proxy.
# ---------------------------------------------------------------------------------------------

data "aws_iam_policy_document" "rds_proxy_assume" {
  statement {
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["rds.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "rds_proxy" {
  count = var.use_rds_proxy ? 1 : 0

  name               = "${var.name}-rds-proxy"
  assume_role_policy = data.aws_iam_policy_document.rds_proxy_assume.json
}

data "aws_iam_policy_document" "rds_proxy" {
  statement {
    sid     = "ReadTheLoginSecrets"
    actions = ["secretsmanager:GetSecretValue"]
    resources = [
      aws_secretsmanager_secret.database_password.arn,
      aws_db_instance.qbill.master_user_secret[0].secret_arn,
    ]
  }

  statement {
    sid       = "DecryptThemThroughSecretsManager"
    actions   = ["kms:Decrypt"]
    resources = [aws_kms_key.data.arn]

    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = ["secretsmanager.${local.region}.amazonaws.com"]
    }
  }
}

resource "aws_iam_role_policy" "rds_proxy" {
  count = var.use_rds_proxy ? 1 : 0

  name   = "read-database-secrets"
  role   = aws_iam_role.rds_proxy[0].id
  policy = data.aws_iam_policy_document.rds_proxy.json
}

resource "aws_cloudwatch_log_group" "rds_proxy" {
  count = var.use_rds_proxy ? 1 : 0

  name              = "/aws/rds/proxy/${var.name}"
  retention_in_days = var.audit_log_retention_days
  kms_key_id        = aws_kms_key.data.arn
}

resource "aws_db_proxy" "qbill" {
  count = var.use_rds_proxy ? 1 : 0

  name                   = var.name
  engine_family          = "POSTGRESQL"
  require_tls            = true
  debug_logging          = false
  idle_client_timeout    = 1800
  role_arn               = aws_iam_role.rds_proxy[0].arn
  vpc_subnet_ids         = aws_subnet.private[*].id
  vpc_security_group_ids = aws_security_group.proxy[*].id

  auth {
    description               = "The worker's login (${var.database_user})"
    auth_scheme               = "SECRETS"
    iam_auth                  = var.database_auth == "iam" ? "REQUIRED" : "DISABLED"
    client_password_auth_type = "POSTGRES_SCRAM_SHA_256"
    secret_arn                = aws_secretsmanager_secret.database_password.arn
  }

  auth {
    description               = "The master user, for the migrate command only"
    auth_scheme               = "SECRETS"
    iam_auth                  = "DISABLED"
    client_password_auth_type = "POSTGRES_SCRAM_SHA_256"
    secret_arn                = aws_db_instance.qbill.master_user_secret[0].secret_arn
  }

  depends_on = [
    aws_iam_role_policy.rds_proxy,
    aws_cloudwatch_log_group.rds_proxy,
    aws_vpc_endpoint.interface,
  ]
}

resource "aws_db_proxy_default_target_group" "qbill" {
  count = var.use_rds_proxy ? 1 : 0

  db_proxy_name = aws_db_proxy.qbill[0].name

  connection_pool_config {
    max_connections_percent      = 90
    max_idle_connections_percent = 50
    connection_borrow_timeout    = 120
  }
}

resource "aws_db_proxy_target" "qbill" {
  count = var.use_rds_proxy ? 1 : 0

  db_proxy_name          = aws_db_proxy.qbill[0].name
  target_group_name      = aws_db_proxy_default_target_group.qbill[0].name
  db_instance_identifier = aws_db_instance.qbill.identifier
}
