# Secrets Manager secrets the worker reads at start (and again when a value stops working),
# all encrypted with the stack's data key:
#   jwt              bare string: the HS256 signing key (64 characters)
#   redis-auth       bare string: the ElastiCache AUTH token
#   database-password JSON {"username", "password"}: the worker login's password, for
#                    database_auth = "secret" and for RDS Proxy (which requires this JSON shape;
#                    it is also the shape of the RDS-managed master user secret)
#   first-operator   JSON {"username", "password"}: the first operator user, created from it by
#                    the {"qbill": "create-operator"} invocation (QBILL_OPERATOR_SECRET_ARN)
# The master user secret is created and rotated by RDS itself (manage_master_user_password).
#
# Rotation goes through Terraform, which owns every value here (README.md, "Secrets and
# rotation"). The JWT key: raise jwt_key_generation and apply. A new random_password replaces the
# secret version: the new key becomes AWSCURRENT and the old one AWSPREVIOUS, which the workers
# read back within 5 minutes and keep accepting for one token lifetime, so rotating logs nobody
# out. Never write a version beside Terraform: its own version, holding the old key, would become
# AWSCURRENT again whenever Terraform recreates it.

resource "random_password" "jwt" {
  length  = 64
  special = false # a bare key, free of quoting problems; 64 alphanumerics are ~380 bits

  # A new generation is a new key (rotation).
  keepers = {
    generation = var.jwt_key_generation
  }
}

resource "random_password" "redis_auth" {
  length           = 64
  special          = true
  override_special = "!&#$^<>-" # the only specials ElastiCache accepts in an AUTH token
}

resource "random_password" "database" {
  length  = 40
  special = false # goes into connection strings; 40 alphanumerics are ~238 bits
}

resource "random_password" "first_operator" {
  length  = 32
  special = false # typed into curl and JSON bodies; 32 alphanumerics are ~190 bits
  # At least one of each kind, whatever password rules the application applies.
  min_lower   = 1
  min_upper   = 1
  min_numeric = 1
}

resource "aws_secretsmanager_secret" "jwt" {
  #checkov:skip=CKV2_AWS_57:No rotation Lambda in this design: the key is rotated through Terraform (raise jwt_key_generation; the new version becomes AWSCURRENT and the worker accepts AWSPREVIOUS for a token lifetime), see README.
  name                    = "${var.name}/jwt-signing-key"
  description             = "qbill: HS256 signing key of client tokens (bare string, >= 32 bytes)"
  kms_key_id              = aws_kms_key.data.arn
  recovery_window_in_days = var.secret_recovery_window_days
}

resource "aws_secretsmanager_secret_version" "jwt" {
  secret_id     = aws_secretsmanager_secret.jwt.id
  secret_string = random_password.jwt.result
}

resource "aws_secretsmanager_secret" "redis_auth" {
  #checkov:skip=CKV2_AWS_57:The token must change in ElastiCache and in the secret together (auth_token_update_strategy ROTATE); replacing random_password.redis_auth makes Terraform change both, whereas a Secrets Manager rotation Lambda would change only the secret.
  name                    = "${var.name}/redis-auth-token"
  description             = "qbill: ElastiCache Redis AUTH token (bare string)"
  kms_key_id              = aws_kms_key.data.arn
  recovery_window_in_days = var.secret_recovery_window_days
}

resource "aws_secretsmanager_secret_version" "redis_auth" {
  secret_id     = aws_secretsmanager_secret.redis_auth.id
  secret_string = random_password.redis_auth.result
}

resource "aws_secretsmanager_secret" "database_password" {
  #checkov:skip=CKV2_AWS_57:The login's password lives in PostgreSQL and is set by the migrate command from this secret; the default IAM auth mode never uses it, and rotation is done by replacing random_password.database and re-running migrate.
  name                    = "${var.name}/database-password"
  description             = "qbill: password of the worker's database login, JSON {username, password} (database_auth = secret, RDS Proxy)"
  kms_key_id              = aws_kms_key.data.arn
  recovery_window_in_days = var.secret_recovery_window_days
}

resource "aws_secretsmanager_secret_version" "database_password" {
  secret_id = aws_secretsmanager_secret.database_password.id
  secret_string = jsonencode({
    username = var.database_user
    password = random_password.database.result
  })
}

resource "aws_secretsmanager_secret" "first_operator" {
  #checkov:skip=CKV2_AWS_57:Read only by the create-operator invocation, which creates the operator once (an existing user is left as it is); a rotation Lambda would change the secret but never the user's password, so there is nothing to rotate here.
  name                    = "${var.name}/first-operator"
  description             = "qbill: credentials of the first operator user, JSON {username, password} (read by the create-operator invocation)"
  kms_key_id              = aws_kms_key.data.arn
  recovery_window_in_days = var.secret_recovery_window_days
}

resource "aws_secretsmanager_secret_version" "first_operator" {
  secret_id = aws_secretsmanager_secret.first_operator.id
  secret_string = jsonencode({
    username = var.first_operator_username
    password = random_password.first_operator.result
  })
}
