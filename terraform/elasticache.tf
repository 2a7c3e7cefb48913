# Redis on ElastiCache: the worker's cache. Encrypted at rest (data key) and in transit (TLS,
# hence rediss://), AUTH token from Secrets Manager, a primary plus replica(s) with automatic
# failover. Losing the cache costs only latency: every route still answers from PostgreSQL.

resource "aws_elasticache_subnet_group" "qbill" {
  name        = "${var.name}-redis"
  description = "qbill Redis: the private subnets"
  subnet_ids  = aws_subnet.private[*].id
}

resource "aws_cloudwatch_log_group" "redis_slow_log" {
  #checkov:skip=CKV_AWS_338:Operational logs (slow Redis commands); retention is the operator's log_retention_days (default 30). The audit trails (access logs, flow logs) keep audit_log_retention_days.
  name              = "/aws/elasticache/${var.name}-redis/slow-log"
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.data.arn
}

resource "aws_elasticache_replication_group" "qbill" {
  replication_group_id = "${var.name}-redis"
  description          = "qbill cache"

  engine               = "redis"
  engine_version       = var.redis_engine_version
  node_type            = var.redis_node_type
  num_cache_clusters   = var.redis_num_cache_clusters
  port                 = 6379
  parameter_group_name = "default.redis${split(".", var.redis_engine_version)[0]}"

  subnet_group_name  = aws_elasticache_subnet_group.qbill.name
  security_group_ids = [aws_security_group.redis.id]

  at_rest_encryption_enabled = true
  kms_key_id                 = aws_kms_key.data.arn
  transit_encryption_enabled = true
  auth_token                 = random_password.redis_auth.result
  auth_token_update_strategy = "ROTATE"

  automatic_failover_enabled = true
  multi_az_enabled           = true

  snapshot_retention_limit   = var.redis_snapshot_retention_days
  snapshot_window            = "01:00-02:00"
  maintenance_window         = "sun:04:30-sun:05:30"
  auto_minor_version_upgrade = true
  apply_immediately          = var.apply_immediately

  log_delivery_configuration {
    destination      = aws_cloudwatch_log_group.redis_slow_log.name
    destination_type = "cloudwatch-logs"
    log_format       = "json"
    log_type         = "slow-log"
  }
}
