# Every knob an operator is expected to turn. Defaults give a small, production-shaped stack
# (Multi-AZ database, two Redis nodes, deletion protection on); README.md lists them all.

# ---------------------------------------------------------------------------------------------
# General
# ---------------------------------------------------------------------------------------------

variable "aws_region" {
  description = "AWS region to deploy into: a commercial region, or AWS GovCloud (us-gov-*). ARNs follow the region's partition, but service names (endpoints, service principals, kms:ViaService) are written as <service>.<region>.amazonaws.com, so China (cn-*, amazonaws.com.cn) and the isolated regions are not supported."
  type        = string
  default     = "eu-central-1"

  validation {
    condition     = can(regex("^(us-gov-[a-z]+-[0-9]+|[a-z]{2}-[a-z]+-[0-9]+)$", var.aws_region)) && !startswith(var.aws_region, "cn-")
    error_message = "aws_region must be a commercial or GovCloud region name such as eu-central-1 or us-gov-west-1 (China and isolated regions use other service names and are not supported)."
  }
}

variable "name" {
  description = "Name prefix of every resource: the request queue is <name>-requests, reply queues <name>-reply-<uuid>."
  type        = string
  default     = "qbill"

  validation {
    # SQS queue names allow 80 characters; "<name>-reply-" plus a 36-character UUID must fit.
    condition     = can(regex("^[a-z][a-z0-9-]{0,29}$", var.name))
    error_message = "name must be 1-30 characters of lowercase letters, digits and hyphens, starting with a letter."
  }
}

variable "tags" {
  description = "Extra tags applied to every resource (merged into the provider's default_tags)."
  type        = map(string)
  default     = {}
}

variable "kms_deletion_window_days" {
  description = "Waiting period before a scheduled deletion of the stack's KMS keys takes effect."
  type        = number
  default     = 30

  validation {
    condition     = var.kms_deletion_window_days >= 7 && var.kms_deletion_window_days <= 30
    error_message = "kms_deletion_window_days must be between 7 and 30."
  }
}

# ---------------------------------------------------------------------------------------------
# Network
# ---------------------------------------------------------------------------------------------

variable "vpc_cidr" {
  description = "CIDR block of the VPC the stack creates. Private subnets are carved out of it (/20 each)."
  type        = string
  default     = "10.40.0.0/16"

  validation {
    condition     = can(cidrhost(var.vpc_cidr, 0)) && tonumber(split("/", var.vpc_cidr)[1]) <= 20
    error_message = "vpc_cidr must be a valid IPv4 CIDR block of /20 or larger."
  }
}

variable "az_count" {
  description = "Number of availability zones (one private subnet each), taken in name order from the region's zones. RDS and ElastiCache need at least two. Ignored when availability_zones is set."
  type        = number
  default     = 2

  validation {
    condition     = var.az_count >= 2 && var.az_count <= 4
    error_message = "az_count must be between 2 and 4."
  }
}

variable "availability_zones" {
  description = "Explicit availability zone names for the private subnets, e.g. [\"eu-central-1a\", \"eu-central-1b\"]. Empty: the first az_count available zones of <region>a ... <region>f."
  type        = list(string)
  default     = []

  validation {
    condition     = length(var.availability_zones) == 0 || (length(var.availability_zones) >= 2 && length(var.availability_zones) <= 4 && length(distinct(var.availability_zones)) == length(var.availability_zones))
    error_message = "availability_zones must be empty or list 2 to 4 distinct zone names."
  }
}

# ---------------------------------------------------------------------------------------------
# Queues
# ---------------------------------------------------------------------------------------------

variable "max_receive_count" {
  description = "Receives of a request message before SQS moves it to the dead-letter queue."
  type        = number
  default     = 5

  validation {
    condition     = var.max_receive_count >= 1 && var.max_receive_count <= 1000
    error_message = "max_receive_count must be between 1 and 1000."
  }
}

variable "request_retention_seconds" {
  description = "How long an unprocessed request waits on the request queue (SQS MessageRetentionPeriod)."
  type        = number
  default     = 345600 # 4 days

  validation {
    condition     = var.request_retention_seconds >= 60 && var.request_retention_seconds <= 1209600
    error_message = "request_retention_seconds must be between 60 and 1209600 (14 days)."
  }
}

variable "dlq_retention_seconds" {
  description = "How long a dead-lettered request is kept for inspection and redrive."
  type        = number
  default     = 1209600 # 14 days, the SQS maximum

  validation {
    condition     = var.dlq_retention_seconds >= 60 && var.dlq_retention_seconds <= 1209600
    error_message = "dlq_retention_seconds must be between 60 and 1209600 (14 days)."
  }
}

variable "reply_idle_seconds" {
  description = "A reply queue that is empty and got no reply for this long is deleted by the hourly sweep (QBILL_REPLY_IDLE_SECONDS)."
  type        = number
  default     = 86400

  validation {
    condition     = var.reply_idle_seconds >= 3600
    error_message = "reply_idle_seconds must be at least an hour (and at least reply_retention_seconds)."
  }
}

variable "reply_sweep_schedule" {
  description = "EventBridge schedule of the reply-queue sweep (the sweeper invoked with {\"qbill\": \"sweep\"}, which fans the shards out on the sweep queue)."
  type        = string
  default     = "rate(1 hour)"

  validation {
    condition     = can(regex("^(cron|rate)\\(.+\\)$", var.reply_sweep_schedule))
    error_message = "reply_sweep_schedule must be an EventBridge schedule expression, cron(...) or rate(...)."
  }
}

variable "sweep_max_concurrency" {
  description = "Maximum concurrent sweeper invocations the sweep queue's event source mapping drives: shards swept at once (16 shards per sweep)."
  type        = number
  default     = 4

  validation {
    condition     = var.sweep_max_concurrency >= 2 && var.sweep_max_concurrency <= 1000 && floor(var.sweep_max_concurrency) == var.sweep_max_concurrency
    error_message = "sweep_max_concurrency must be a whole number between 2 and 1000 (the limits of SQS event source mappings)."
  }
}

variable "sweeper_timeout_seconds" {
  description = "Sweeper timeout: a shard task sweeps ListQueues pages until this (less a margin) runs out, then queues its continuation. The sweep queue's visibility timeout is six times this."
  type        = number
  default     = 120

  validation {
    condition     = var.sweeper_timeout_seconds >= 30 && var.sweeper_timeout_seconds <= 900
    error_message = "sweeper_timeout_seconds must be between 30 and 900."
  }
}

variable "sweeper_memory_mb" {
  description = "Sweeper memory in MB."
  type        = number
  default     = 256

  validation {
    condition     = var.sweeper_memory_mb >= 128 && var.sweeper_memory_mb <= 10240
    error_message = "sweeper_memory_mb must be between 128 and 10240."
  }
}

variable "reply_retention_seconds" {
  description = "How long a reply waits on a client's reply queue (QBILL_REPLY_RETENTION_SECONDS; the worker creates reply queues with it)."
  type        = number
  default     = 3600

  validation {
    # The gateway hides a reply it handed out for 12 hours (VisibilityTimeout=43200), which must
    # outlast the queue's retention so that a consumed reply is never handed out twice.
    condition     = var.reply_retention_seconds >= 60 && var.reply_retention_seconds <= 43200
    error_message = "reply_retention_seconds must be between 60 and 43200 (12 hours)."
  }
}

# ---------------------------------------------------------------------------------------------
# Alarms
# ---------------------------------------------------------------------------------------------

variable "request_age_alarm_threshold_seconds" {
  description = "Alarm when the oldest message on the request queue is older than this (a backlog the workers do not drain)."
  type        = number
  default     = 300

  validation {
    condition     = var.request_age_alarm_threshold_seconds >= 60
    error_message = "request_age_alarm_threshold_seconds must be at least 60."
  }
}

variable "worker_error_rate_alarm_percent" {
  description = "Alarm when more than this percentage of the worker's invocations fail whole (Errors / Invocations over 5 minutes)."
  type        = number
  default     = 1

  validation {
    condition     = var.worker_error_rate_alarm_percent >= 0 && var.worker_error_rate_alarm_percent <= 100
    error_message = "worker_error_rate_alarm_percent must be between 0 and 100."
  }
}

variable "api_5xx_alarm_threshold" {
  description = "Alarm when the API answers more than this many 5XX responses in 5 minutes (a reply queue or the request queue that cannot be reached)."
  type        = number
  default     = 5

  validation {
    condition     = var.api_5xx_alarm_threshold >= 0
    error_message = "api_5xx_alarm_threshold must be 0 or more."
  }
}

variable "alarm_topic_enabled" {
  description = "Create an SNS topic (KMS-encrypted) that every alarm notifies."
  type        = bool
  default     = false
}

variable "alarm_email" {
  description = "E-mail address subscribed to the alarm topic (only with alarm_topic_enabled; the address must confirm the subscription)."
  type        = string
  default     = null
}

variable "alarm_actions" {
  description = "Further ARNs (SNS topics, ...) notified when an alarm fires and when it recovers."
  type        = list(string)
  default     = []
}

# ---------------------------------------------------------------------------------------------
# API Gateway
# ---------------------------------------------------------------------------------------------

variable "stage_name" {
  description = "API Gateway stage name; it is the first path segment of gateway_url."
  type        = string
  default     = "v1"

  validation {
    condition     = can(regex("^[A-Za-z0-9_]{1,64}$", var.stage_name))
    error_message = "stage_name must be 1-64 letters, digits or underscores."
  }
}

variable "api_throttle_rate_limit" {
  description = "Steady-state requests per second the stage accepts (method settings and usage plan)."
  type        = number
  default     = 100

  validation {
    condition     = var.api_throttle_rate_limit > 0 && var.api_throttle_rate_limit <= 10000
    error_message = "api_throttle_rate_limit must be greater than 0 and at most 10000 (the default account limit)."
  }
}

variable "api_throttle_burst_limit" {
  description = "Burst of requests the stage accepts above the rate limit (method settings and usage plan)."
  type        = number
  default     = 200

  validation {
    condition     = var.api_throttle_burst_limit >= 1 && var.api_throttle_burst_limit <= 5000
    error_message = "api_throttle_burst_limit must be between 1 and 5000 (the default account limit)."
  }
}

variable "api_logging_level" {
  description = "API Gateway execution log level: OFF, ERROR or INFO (INFO logs every request's integration exchange)."
  type        = string
  default     = "ERROR"

  validation {
    condition     = contains(["OFF", "ERROR", "INFO"], var.api_logging_level)
    error_message = "api_logging_level must be OFF, ERROR or INFO."
  }
}

variable "api_xray_tracing_enabled" {
  description = "Enable AWS X-Ray tracing on the API stage."
  type        = bool
  default     = true
}

variable "manage_api_gateway_account" {
  description = "Set the region-wide API Gateway account setting (its CloudWatch Logs role), which access logging needs. Set false if another stack in this account and region already manages it."
  type        = bool
  default     = true
}

variable "waf_web_acl_arn" {
  description = "ARN of an existing regional WAFv2 web ACL to associate with the stage instead of the one this stack creates (null: the stack's own web ACL, waf.tf)."
  type        = string
  default     = null

  validation {
    condition     = var.waf_web_acl_arn == null || can(regex("^arn:[a-z-]+:wafv2:[a-z0-9-]+:[0-9]{12}:regional/webacl/", var.waf_web_acl_arn))
    error_message = "waf_web_acl_arn must be the ARN of a regional WAFv2 web ACL, or null."
  }
}

variable "waf_auth_rate_limit" {
  description = "The stack's web ACL: POST requests without a bearer token (no Authorization header, or not \"Bearer ...\") and POST requests to /auth* paths, counted together, one source IP may send in 5 minutes before it is blocked (each such POST with a fresh queue_name makes the worker create a reply queue)."
  type        = number
  default     = 100

  validation {
    condition     = var.waf_auth_rate_limit >= 10 && var.waf_auth_rate_limit <= 2000000000 && floor(var.waf_auth_rate_limit) == var.waf_auth_rate_limit
    error_message = "waf_auth_rate_limit must be a whole number between 10 and 2000000000 (WAF's limits for rate-based rules)."
  }
}

variable "waf_rate_limit" {
  description = "The stack's web ACL: requests of any kind one source IP may send in 5 minutes before it is blocked."
  type        = number
  default     = 3000

  validation {
    condition     = var.waf_rate_limit >= 10 && var.waf_rate_limit <= 2000000000 && floor(var.waf_rate_limit) == var.waf_rate_limit
    error_message = "waf_rate_limit must be a whole number between 10 and 2000000000 (WAF's limits for rate-based rules)."
  }
}

variable "api_auth_throttle_rate_limit" {
  description = "Steady-state requests per second the stage accepts on each POST /auth* method (lower than api_throttle_rate_limit: they are anonymous and a login costs an Argon2 check)."
  type        = number
  default     = 10

  validation {
    condition     = var.api_auth_throttle_rate_limit > 0 && var.api_auth_throttle_rate_limit <= 10000
    error_message = "api_auth_throttle_rate_limit must be greater than 0 and at most 10000."
  }
}

variable "api_auth_throttle_burst_limit" {
  description = "Burst of requests each POST /auth* method accepts above api_auth_throttle_rate_limit."
  type        = number
  default     = 20

  validation {
    condition     = var.api_auth_throttle_burst_limit >= 1 && var.api_auth_throttle_burst_limit <= 5000 && floor(var.api_auth_throttle_burst_limit) == var.api_auth_throttle_burst_limit
    error_message = "api_auth_throttle_burst_limit must be a whole number between 1 and 5000."
  }
}

# ---------------------------------------------------------------------------------------------
# Lambda worker
# ---------------------------------------------------------------------------------------------

variable "lambda_package" {
  description = "Path of the worker's zip package, built by scripts/package-lambda."
  type        = string
  default     = "../target/lambda/qbill-lambda.zip"
}

variable "lambda_architecture" {
  description = "Instruction set of the worker: x86_64 or arm64 (the package must be built for it)."
  type        = string
  default     = "x86_64"

  validation {
    condition     = contains(["x86_64", "arm64"], var.lambda_architecture)
    error_message = "lambda_architecture must be x86_64 or arm64."
  }
}

variable "lambda_timeout_seconds" {
  description = "Worker timeout. The request queue's visibility timeout is six times this."
  type        = number
  default     = 30

  validation {
    condition     = var.lambda_timeout_seconds >= 3 && var.lambda_timeout_seconds <= 900
    error_message = "lambda_timeout_seconds must be between 3 and 900."
  }
}

variable "lambda_memory_mb" {
  description = "Worker memory in MB (CPU is allocated in proportion). The worker peaks at about 81 MiB (two password checks at once, scripts/bench memory); more memory buys the CPU its Argon2 checks need."
  type        = number
  default     = 256

  validation {
    condition     = var.lambda_memory_mb >= 128 && var.lambda_memory_mb <= 10240
    error_message = "lambda_memory_mb must be between 128 and 10240."
  }
}

variable "lambda_tracing_mode" {
  description = "X-Ray tracing mode of the worker: PassThrough (trace only when the caller sampled) or Active."
  type        = string
  default     = "PassThrough"

  validation {
    condition     = contains(["PassThrough", "Active"], var.lambda_tracing_mode)
    error_message = "lambda_tracing_mode must be PassThrough or Active."
  }
}

variable "worker_max_concurrency" {
  description = "Maximum concurrent worker invocations the SQS event source mapping drives: the number of workers."
  type        = number
  default     = 10

  validation {
    condition     = var.worker_max_concurrency >= 2 && var.worker_max_concurrency <= 1000 && floor(var.worker_max_concurrency) == var.worker_max_concurrency
    error_message = "worker_max_concurrency must be a whole number between 2 and 1000 (the limits of SQS event source mappings)."
  }
}

variable "worker_reserved_concurrency" {
  description = "Reserved concurrency of the worker function: -1 leaves it unreserved (it shares the account's pool); a number >= worker_max_concurrency guarantees that many; 0 stops the worker."
  type        = number
  default     = -1

  validation {
    condition     = var.worker_reserved_concurrency >= -1 && floor(var.worker_reserved_concurrency) == var.worker_reserved_concurrency
    error_message = "worker_reserved_concurrency must be -1 (unreserved) or a whole number >= 0."
  }
}

variable "admin_timeout_seconds" {
  description = "Timeout of the admin function (migrations, the first operator)."
  type        = number
  default     = 300

  validation {
    condition     = var.admin_timeout_seconds >= 30 && var.admin_timeout_seconds <= 900
    error_message = "admin_timeout_seconds must be between 30 and 900."
  }
}

variable "lambda_batch_size" {
  description = "Maximum messages per worker invocation. Above 10 needs lambda_batching_window_seconds >= 1."
  type        = number
  default     = 10

  validation {
    condition     = var.lambda_batch_size >= 1 && var.lambda_batch_size <= 10000
    error_message = "lambda_batch_size must be between 1 and 10000."
  }
}

variable "lambda_batching_window_seconds" {
  description = "How long the event source mapping gathers messages before invoking a worker (0 to 300 seconds)."
  type        = number
  default     = 1

  validation {
    condition     = var.lambda_batching_window_seconds >= 0 && var.lambda_batching_window_seconds <= 300
    error_message = "lambda_batching_window_seconds must be between 0 and 300."
  }
}

variable "log_retention_days" {
  description = "Retention of the operational log groups (the worker's and API Gateway's execution logs)."
  type        = number
  default     = 30

  validation {
    condition     = contains([1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.log_retention_days)
    error_message = "log_retention_days must be a retention period CloudWatch Logs accepts (1, 3, 5, 7, 14, 30, 60, 90, ... 3653)."
  }
}

variable "audit_log_retention_days" {
  description = "Retention of the audit log groups (API Gateway access logs, VPC flow logs)."
  type        = number
  default     = 365

  validation {
    condition     = contains([1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.audit_log_retention_days)
    error_message = "audit_log_retention_days must be a retention period CloudWatch Logs accepts (1, 3, 5, 7, 14, 30, 60, 90, ... 3653)."
  }
}

# ---------------------------------------------------------------------------------------------
# PostgreSQL (RDS)
# ---------------------------------------------------------------------------------------------

variable "database_auth" {
  description = "How the worker logs in to PostgreSQL: iam (IAM database authentication tokens) or secret (password from the database password secret)."
  type        = string
  default     = "iam"

  validation {
    condition     = contains(["iam", "secret"], var.database_auth)
    error_message = "database_auth must be iam or secret."
  }
}

variable "database_name" {
  description = "Name of the application database."
  type        = string
  default     = "qbill"

  validation {
    condition     = can(regex("^[a-z][a-z0-9_]{0,62}$", var.database_name))
    error_message = "database_name must start with a letter and contain only lowercase letters, digits and underscores (at most 63)."
  }
}

variable "database_user" {
  description = "The worker's database login role (created by the migrations; granted rds_iam for IAM authentication)."
  type        = string
  default     = "qbill_app"

  validation {
    condition     = can(regex("^[a-z][a-z0-9_]{0,62}$", var.database_user))
    error_message = "database_user must start with a letter and contain only lowercase letters, digits and underscores (at most 63)."
  }
}

variable "db_master_username" {
  description = "Master user of the RDS instance; its password is generated and kept by RDS in Secrets Manager. Used only by the migrate command."
  type        = string
  default     = "qbill_admin"

  validation {
    condition     = can(regex("^[a-z][a-z0-9_]{0,15}$", var.db_master_username)) && !contains(["admin", "postgres", "rdsadmin"], var.db_master_username)
    error_message = "db_master_username must be 1-16 lowercase letters, digits or underscores, start with a letter, and not be a reserved name."
  }
}

variable "db_engine_version" {
  description = "PostgreSQL engine version. A major version alone (\"16\") lets RDS choose and auto-upgrade the minor version without Terraform drift; a full version (\"16.4\") pins it."
  type        = string
  default     = "16"

  validation {
    condition     = can(regex("^1[6-9](\\.[0-9]+)?$", var.db_engine_version))
    error_message = "db_engine_version must be PostgreSQL 16 or later, as \"16\" or \"16.x\"."
  }
}

variable "db_instance_class" {
  description = "RDS instance class. max_connections grows with its memory (about 220 on db.t4g.small, 450 on db.t4g.medium)."
  type        = string
  default     = "db.t4g.small"

  validation {
    condition     = startswith(var.db_instance_class, "db.")
    error_message = "db_instance_class must be an RDS instance class such as db.t4g.small."
  }
}

variable "db_allocated_storage_gb" {
  description = "Initial gp3 storage of the database, in GB."
  type        = number
  default     = 20

  validation {
    condition     = var.db_allocated_storage_gb >= 20 && var.db_allocated_storage_gb <= 65536
    error_message = "db_allocated_storage_gb must be between 20 and 65536."
  }
}

variable "db_max_allocated_storage_gb" {
  description = "Upper bound of storage autoscaling, in GB (0 disables autoscaling)."
  type        = number
  default     = 100

  validation {
    condition     = var.db_max_allocated_storage_gb == 0 || (var.db_max_allocated_storage_gb >= 20 && var.db_max_allocated_storage_gb <= 65536)
    error_message = "db_max_allocated_storage_gb must be 0 or between 20 and 65536."
  }
}

variable "db_multi_az" {
  description = "Run the database Multi-AZ (a synchronous standby in a second AZ; about twice the instance cost)."
  type        = bool
  default     = true
}

variable "db_backup_retention_days" {
  description = "Days of automated backups (point-in-time recovery window)."
  type        = number
  default     = 7

  validation {
    condition     = var.db_backup_retention_days >= 1 && var.db_backup_retention_days <= 35
    error_message = "db_backup_retention_days must be between 1 and 35."
  }
}

variable "deletion_protection" {
  description = "Protect the RDS instance from deletion. Set false (and apply) before a terraform destroy."
  type        = bool
  default     = true
}

variable "db_skip_final_snapshot" {
  description = "Skip the final snapshot when the database is destroyed (keep false in production)."
  type        = bool
  default     = false
}

variable "apply_immediately" {
  description = "Apply RDS and ElastiCache changes at once instead of in the next maintenance window."
  type        = bool
  default     = false
}

variable "db_performance_insights_retention_days" {
  description = "Performance Insights retention: 7 (free tier) or a multiple of 31 up to 731."
  type        = number
  default     = 7

  validation {
    condition     = var.db_performance_insights_retention_days == 7 || var.db_performance_insights_retention_days == 731 || (var.db_performance_insights_retention_days % 31 == 0 && var.db_performance_insights_retention_days <= 713)
    error_message = "db_performance_insights_retention_days must be 7, 731, or a multiple of 31 up to 713."
  }
}

variable "db_monitoring_interval_seconds" {
  description = "Enhanced Monitoring interval: 1, 5, 10, 15, 30 or 60 seconds."
  type        = number
  default     = 60

  validation {
    condition     = contains([1, 5, 10, 15, 30, 60], var.db_monitoring_interval_seconds)
    error_message = "db_monitoring_interval_seconds must be 1, 5, 10, 15, 30 or 60."
  }
}

variable "db_log_min_duration_ms" {
  description = "PostgreSQL log_min_duration_statement: statements slower than this are logged (-1 disables)."
  type        = number
  default     = 1000

  validation {
    condition     = var.db_log_min_duration_ms >= -1
    error_message = "db_log_min_duration_ms must be -1 or more."
  }
}

variable "use_rds_proxy" {
  description = "Put an RDS Proxy (TLS required; IAM authentication required in database_auth = iam) between the workers and the database. Pools connections when many workers run."
  type        = bool
  default     = false
}

# ---------------------------------------------------------------------------------------------
# Redis (ElastiCache)
# ---------------------------------------------------------------------------------------------

variable "redis_node_type" {
  description = "ElastiCache node type."
  type        = string
  default     = "cache.t4g.micro"

  validation {
    condition     = startswith(var.redis_node_type, "cache.")
    error_message = "redis_node_type must be an ElastiCache node type such as cache.t4g.micro."
  }
}

variable "redis_engine_version" {
  description = "Redis OSS engine version."
  type        = string
  default     = "7.1"
}

variable "redis_num_cache_clusters" {
  description = "Redis nodes (one primary plus replicas). Two or more enable automatic failover and Multi-AZ."
  type        = number
  default     = 2

  validation {
    condition     = var.redis_num_cache_clusters >= 2 && var.redis_num_cache_clusters <= 6
    error_message = "redis_num_cache_clusters must be between 2 and 6 (automatic failover needs a replica)."
  }
}

variable "redis_snapshot_retention_days" {
  description = "Days of automatic Redis snapshots (the cache can always be rebuilt from PostgreSQL)."
  type        = number
  default     = 1

  validation {
    condition     = var.redis_snapshot_retention_days >= 1 && var.redis_snapshot_retention_days <= 35
    error_message = "redis_snapshot_retention_days must be between 1 and 35."
  }
}

# ---------------------------------------------------------------------------------------------
# Secrets
# ---------------------------------------------------------------------------------------------

variable "secret_recovery_window_days" {
  description = "Days a deleted secret of the stack can still be restored (7-30), or 0 to delete at once. Secret names stay taken during the window: after a terraform destroy, a re-deploy under the same name fails until each secret is restored (and imported) or force-deleted (README.md, Tearing down). The RDS-managed master secret is deleted by RDS with the instance."
  type        = number
  default     = 7

  validation {
    condition     = var.secret_recovery_window_days == 0 || (var.secret_recovery_window_days >= 7 && var.secret_recovery_window_days <= 30)
    error_message = "secret_recovery_window_days must be 0 or between 7 and 30."
  }
}

# ---------------------------------------------------------------------------------------------
# Billing jobs and operators
# ---------------------------------------------------------------------------------------------

variable "overdue_schedule" {
  description = "EventBridge schedule of the daily overdue-bills job (the worker invoked with {\"qbill\": \"overdue\"}: bills past their due date plus the provider's grace days become overdue and are charged late fees). The default runs at 02:15 UTC."
  type        = string
  default     = "cron(15 2 * * ? *)"

  validation {
    condition     = can(regex("^(cron|rate)\\(.+\\)$", var.overdue_schedule))
    error_message = "overdue_schedule must be an EventBridge schedule expression, cron(...) or rate(...)."
  }
}

variable "jwt_key_generation" {
  description = "Generation of the JWT signing key in <name>/jwt-signing-key. Raise it by one and apply to rotate the key: the new key signs from then on, and tokens signed with the old one stay valid for one token lifetime (README.md, \"Secrets and rotation\")."
  type        = number
  default     = 1

  validation {
    condition     = var.jwt_key_generation >= 1 && floor(var.jwt_key_generation) == var.jwt_key_generation
    error_message = "jwt_key_generation must be a whole number, 1 or more."
  }
}

variable "first_operator_username" {
  description = "Username of the first operator user, created by the {\"qbill\": \"create-operator\"} invocation with a generated password (first_operator_secret_arn)."
  type        = string
  default     = "ops"

  validation {
    # The users table's constraint on usernames.
    condition     = can(regex("^[a-z0-9][a-z0-9._-]{1,62}$", var.first_operator_username))
    error_message = "first_operator_username must be 2-63 lowercase letters, digits, '.', '_' or '-', starting with a letter or digit."
  }
}

variable "due_soon_schedule" {
  description = "EventBridge schedule of the daily due-soon job (the worker invoked with {\"qbill\": \"due-soon\"}: a bill.due_soon notification for every bill due in 3 days). The default runs at 06:00 UTC."
  type        = string
  default     = "cron(0 6 * * ? *)"

  validation {
    condition     = can(regex("^(cron|rate)\\(.+\\)$", var.due_soon_schedule))
    error_message = "due_soon_schedule must be an EventBridge schedule expression, cron(...) or rate(...)."
  }
}

variable "expire_payments_schedule" {
  description = "EventBridge schedule of the payments' expiry job (the worker invoked with {\"qbill\": \"expire-payments\"}: card payments waiting on the processor for 30 minutes are settled if it captured them, else cancelled and their bills released)."
  type        = string
  default     = "rate(5 minutes)"

  validation {
    condition     = can(regex("^(cron|rate)\\(.+\\)$", var.expire_payments_schedule))
    error_message = "expire_payments_schedule must be an EventBridge schedule expression, cron(...) or rate(...)."
  }
}

variable "settle_schedule" {
  description = "EventBridge schedule of the settle job (the worker invoked with {\"qbill\": \"settle\"}: each UTC day that is over is closed once into every provider's settlements)."
  type        = string
  default     = "cron(15 0 * * ? *)"

  validation {
    condition     = can(regex("^(cron|rate)\\(.+\\)$", var.settle_schedule))
    error_message = "settle_schedule must be an EventBridge schedule expression, cron(...) or rate(...)."
  }
}

variable "events_schedule" {
  description = "EventBridge schedule of the events job (the worker invoked with {\"qbill\": \"events\"}: the providers' webhooks that are due, and the new events put on the bus)."
  type        = string
  default     = "rate(1 minute)"

  validation {
    condition     = can(regex("^(cron|rate)\\(.+\\)$", var.events_schedule))
    error_message = "events_schedule must be an EventBridge schedule expression, cron(...) or rate(...)."
  }
}

variable "reconcile_schedule" {
  description = "EventBridge schedule of the reconciliation (the worker invoked with {\"qbill\": \"reconcile\"}: the processor's intents of the last 3 days against the books; a lost webhook is healed, any other difference alarms)."
  type        = string
  default     = "rate(1 hour)"

  validation {
    condition     = can(regex("^(cron|rate)\\(.+\\)$", var.reconcile_schedule))
    error_message = "reconcile_schedule must be an EventBridge schedule expression, cron(...) or rate(...)."
  }
}

# ---------------------------------------------------------------------------------------------
# Payments (payments.tf)
# ---------------------------------------------------------------------------------------------

variable "stripe_secret_key" {
  description = "Stripe secret API key (sk_live_... or sk_test_..., or a restricted key allowing PaymentIntents write). Kept in Secrets Manager; only the worker reads it."
  type        = string
  sensitive   = true

  validation {
    condition     = can(regex("^(sk|rk)_(live|test)_[A-Za-z0-9]+$", var.stripe_secret_key))
    error_message = "stripe_secret_key must be a Stripe secret or restricted key (sk_... or rk_...)."
  }
}

variable "stripe_webhook_secret" {
  description = "Signing secret (whsec_...) of the Stripe webhook endpoint pointed at <api_url>/webhooks/stripe, for the events payment_intent.succeeded, payment_intent.payment_failed, payment_intent.canceled, charge.refunded, refund.updated and refund.failed."
  type        = string
  sensitive   = true

  validation {
    condition     = can(regex("^whsec_[A-Za-z0-9+/=_-]+$", var.stripe_webhook_secret))
    error_message = "stripe_webhook_secret must be a Stripe webhook signing secret (whsec_...)."
  }
}

variable "stripe_publishable_key" {
  description = "Stripe publishable key (pk_live_... or pk_test_...), for Stripe.js in the web app (written to its config.json; not a secret)."
  type        = string

  validation {
    condition     = can(regex("^pk_(live|test)_[A-Za-z0-9]+$", var.stripe_publishable_key))
    error_message = "stripe_publishable_key must be a Stripe publishable key (pk_...)."
  }
}

variable "stripe_previous_webhook_secret" {
  description = "While the webhook signing secret is rotated: the old one, still accepted; empty otherwise (payments.tf says how to rotate)."
  type        = string
  sensitive   = true
  default     = ""
}

# ---------------------------------------------------------------------------------------------
# Identity and mail
# ---------------------------------------------------------------------------------------------

variable "identity" {
  description = "Who signs users in: builtin (the worker's own logins and tokens, POST /auth) or cognito (a Cognito user pool this stack creates; the /auth* routes are not deployed and the worker accepts the pool's ID tokens)."
  type        = string
  default     = "builtin"

  validation {
    condition     = contains(["builtin", "cognito"], var.identity)
    error_message = "identity must be builtin or cognito."
  }
}

variable "cognito_mail_through_ses" {
  description = "With identity = cognito: whether the user pool mails its verification and reset codes through the stack's SES identity (true) or through Cognito's own sender (false, at most 50 mails a day). Cognito refuses an SES identity that is not verified, and the first apply creates it unverified: deploy with false, verify the sender, then set true and apply again (README.md, \"Identity: built-in or Cognito\")."
  type        = bool
  default     = false
}

variable "web_url" {
  description = "Base URL of the web client, without a trailing slash (QBILL_WEB_URL). Mails link to <web_url>/verify-email?token=... and <web_url>/reset-password?token=..., and its origin is the one the API allows (CORS). Null: the web app this stack serves, at its CloudFront distribution's https://<id>.cloudfront.net. Set it to the custom domain of web_certificate_arn, or to where you serve the app yourself (README.md, \"Web app (CloudFront)\")."
  type        = string
  default     = null

  validation {
    # "No trailing slash" is part of the pattern (a path ends in another character): Terraform's
    # || evaluates both sides, and can() is what keeps a null web_url from being an error.
    condition     = var.web_url == null || can(regex("^https?://[^/?#*\\s]+(/[^?#*\\s]*[^/?#*\\s])?$", var.web_url))
    error_message = "web_url must be null or an http(s) URL without query, fragment, wildcard or trailing slash, e.g. https://billing.example.com."
  }
}

variable "mail_from_address" {
  description = "Address the worker mails from (notifications, email verification, password resets; with identity = cognito, the pool's codes too). It becomes an SES identity unless mail_domain is set, in which case it must be an address of that domain."
  type        = string

  validation {
    condition     = can(regex("^[^@\\s<>\"]+@[^@\\s<>\"]+\\.[^@\\s<>\"]+$", var.mail_from_address))
    error_message = "mail_from_address must be a plain address such as billing@example.com (the display name is mail_from_name)."
  }
}

variable "mail_from_name" {
  description = "Display name of the sender: QBILL_MAIL_FROM is \"<mail_from_name> <<mail_from_address>>\", or the bare address when this is empty."
  type        = string
  default     = "qbill"

  validation {
    # Characters that would need quoting in a mail header are kept out rather than quoted.
    condition     = can(regex("^[^<>\"(),:;@\\\\\\[\\]\\r\\n]{0,64}$", var.mail_from_name))
    error_message = "mail_from_name must be at most 64 characters, without < > \" ( ) , : ; @ \\ [ ] or line breaks."
  }
}

variable "mail_domain" {
  description = "Domain to verify in SES instead of the single address (with Easy DKIM; publish the records of the mail_dns_records output). Null: only mail_from_address is verified, by the link SES mails to it."
  type        = string
  default     = null

  validation {
    condition     = var.mail_domain == null || can(regex("^([a-z0-9]([a-z0-9-]*[a-z0-9])?\\.)+[a-z]{2,}$", var.mail_domain))
    error_message = "mail_domain must be a lower-case domain name such as example.com, or null."
  }
}

variable "ses_region" {
  description = "Region of the SES identity and of the API the worker mails through (QBILL_SES_REGION). Null: aws_region. Another region is not reachable from the VPC's endpoints (see README.md, Mail)."
  type        = string
  default     = null

  validation {
    condition     = var.ses_region == null || can(regex("^[a-z]{2}(-gov|-iso[a-z]*)?-[a-z]+-[0-9]+$", var.ses_region))
    error_message = "ses_region must be an AWS region name such as eu-central-1, or null."
  }
}

variable "mail_sandbox_recipients" {
  description = "While the account is in the SES sandbox: addresses to verify as recipients (SES mails each a link) and that the worker may mail. Leave empty once production access is granted."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for address in var.mail_sandbox_recipients : can(regex("^[^@\\s<>\"]+@[^@\\s<>\"]+\\.[^@\\s<>\"]+$", address))])
    error_message = "mail_sandbox_recipients must be plain addresses such as tester@example.com."
  }
}

variable "notify_schedule" {
  description = "EventBridge schedule of the notification sender (the worker invoked with {\"qbill\": \"notify\"}: drains the notification outbox and mails through SES)."
  type        = string
  default     = "rate(1 minute)"

  validation {
    condition     = can(regex("^(cron|rate)\\(.+\\)$", var.notify_schedule))
    error_message = "notify_schedule must be an EventBridge schedule expression, cron(...) or rate(...)."
  }
}

# ---------------------------------------------------------------------------------------------
# Documents (S3)
# ---------------------------------------------------------------------------------------------

variable "documents_retention_days" {
  description = "Days a receipt, bill or statement is kept in the documents bucket before its lifecycle rule expires it (ten years by default, as bookkeeping asks). The expired version is then deleted documents_noncurrent_days later."
  type        = number
  default     = 3650

  validation {
    condition     = var.documents_retention_days >= 1 && floor(var.documents_retention_days) == var.documents_retention_days
    error_message = "documents_retention_days must be a whole number of days, at least 1."
  }
}

variable "documents_noncurrent_days" {
  description = "Days a replaced or expired version of a document is kept before S3 deletes it for good (documents are written once, so this is mostly the grace period after documents_retention_days)."
  type        = number
  default     = 30

  validation {
    condition     = var.documents_noncurrent_days >= 1 && floor(var.documents_noncurrent_days) == var.documents_noncurrent_days
    error_message = "documents_noncurrent_days must be a whole number of days, at least 1."
  }
}

variable "document_url_seconds" {
  description = "Lifetime of the presigned GET links the worker hands out for documents (QBILL_DOCUMENT_URL_SECONDS). A link also dies with the worker's temporary credentials that signed it, whichever comes first (README.md, \"Documents (S3)\")."
  type        = number
  default     = 900

  validation {
    # Longer would promise what the signing credentials cannot keep.
    condition     = var.document_url_seconds >= 60 && var.document_url_seconds <= 3600 && floor(var.document_url_seconds) == var.document_url_seconds
    error_message = "document_url_seconds must be a whole number between 60 and 3600."
  }
}

# ---------------------------------------------------------------------------------------------
# Web app (S3 and CloudFront)
# ---------------------------------------------------------------------------------------------

variable "web_certificate_arn" {
  description = "ARN of an ACM certificate in us-east-1 (CloudFront's region for certificates) for the host of web_url: the distribution then answers on that host (an alias, SNI, TLS 1.2 at least). Point the host's DNS at the web_distribution_domain_name output. Null: the distribution's own https://<id>.cloudfront.net name only."
  type        = string
  default     = null

  validation {
    condition     = var.web_certificate_arn == null || can(regex("^arn:aws[a-z-]*:acm:us-east-1:[0-9]{12}:certificate/[0-9a-f-]+$", var.web_certificate_arn))
    error_message = "web_certificate_arn must be null or the ARN of an ACM certificate in us-east-1."
  }
}

variable "web_price_class" {
  description = "CloudFront price class of the web app's distribution: which edge locations serve it. PriceClass_100 (North America, Europe, Israel) is the cheapest; PriceClass_200 and PriceClass_All add more of the world."
  type        = string
  default     = "PriceClass_100"

  validation {
    condition     = contains(["PriceClass_100", "PriceClass_200", "PriceClass_All"], var.web_price_class)
    error_message = "web_price_class must be PriceClass_100, PriceClass_200 or PriceClass_All."
  }
}
