# A VPC whose workloads live in private subnets. The worker reaches SQS, Secrets Manager, the SES
# API (mail) and, with identity = "cognito", Cognito (the user pool's JWKS) through interface
# endpoints, and the documents bucket through S3's gateway endpoint; RDS and ElastiCache live in
# the same subnets. The one way out to the internet is for the payments processor
# (api.stripe.com, which offers no private endpoint): a NAT gateway in a public subnet of its own,
# and the worker's security group lets it out on 443 only (see "worker -> the payments processor").
# (The SQS event source mapping is polled by the Lambda service outside the VPC, and CloudWatch
# Logs and X-Ray are written by the Lambda service, so neither needs an endpoint.)

resource "aws_vpc" "qbill" {
  cidr_block           = var.vpc_cidr
  enable_dns_support   = true
  enable_dns_hostnames = true # required for private DNS on interface endpoints

  tags = {
    Name = var.name
  }

  lifecycle {
    precondition {
      condition     = length(local.azs) == local.az_count
      error_message = "The region offers fewer available zones than requested (az_count / availability_zones)."
    }
  }
}

# The default security group of the VPC is left with no rules at all: nothing uses it.
resource "aws_default_security_group" "default" {
  vpc_id = aws_vpc.qbill.id

  tags = {
    Name = "${var.name}-default-unused"
  }
}

resource "aws_subnet" "private" {
  count = local.az_count

  vpc_id                  = aws_vpc.qbill.id
  availability_zone       = local.azs[count.index]
  cidr_block              = cidrsubnet(var.vpc_cidr, 20 - tonumber(split("/", var.vpc_cidr)[1]), count.index)
  map_public_ip_on_launch = false

  tags = {
    Name = "${var.name}-private-${local.azs[count.index]}"
  }
}

# The implicit local route, the S3 gateway endpoint's (below) and the NAT gateway's: out of the
# VPC only through the NAT gateway, to the payments processor.
resource "aws_route_table" "private" {
  vpc_id = aws_vpc.qbill.id

  tags = {
    Name = "${var.name}-private"
  }
}

resource "aws_route_table_association" "private" {
  count = local.az_count

  subnet_id      = aws_subnet.private[count.index].id
  route_table_id = aws_route_table.private.id
}

# ---------------------------------------------------------------------------------------------
# The way out to the payments processor: one public subnet, an internet gateway and a NAT gateway
# ---------------------------------------------------------------------------------------------
# One NAT gateway, in the first zone: about 33 USD a month plus 0.045 USD per GB in most regions
# (a card payment's calls are a few KB). If that zone fails, card payments wait (pending) and the
# expiry job settles or cancels them once it is back; a NAT gateway per zone, with a private route
# table per zone, is the step up (three times the hourly cost with three zones).

resource "aws_subnet" "public" {
  #checkov:skip=CKV_AWS_130:Nothing is launched in it but the NAT gateway, which has its own Elastic IP; no address is assigned on launch.
  vpc_id                  = aws_vpc.qbill.id
  availability_zone       = local.azs[0]
  cidr_block              = cidrsubnet(var.vpc_cidr, 20 - tonumber(split("/", var.vpc_cidr)[1]), 15)
  map_public_ip_on_launch = false

  tags = {
    Name = "${var.name}-public-nat-${local.azs[0]}"
  }
}

resource "aws_internet_gateway" "qbill" {
  vpc_id = aws_vpc.qbill.id

  tags = {
    Name = var.name
  }
}

resource "aws_route_table" "public" {
  vpc_id = aws_vpc.qbill.id

  route {
    cidr_block = "0.0.0.0/0"
    gateway_id = aws_internet_gateway.qbill.id
  }

  tags = {
    Name = "${var.name}-public"
  }
}

resource "aws_route_table_association" "public" {
  subnet_id      = aws_subnet.public.id
  route_table_id = aws_route_table.public.id
}

resource "aws_eip" "nat" {
  domain = "vpc"

  tags = {
    Name = "${var.name}-nat"
  }

  depends_on = [aws_internet_gateway.qbill]
}

resource "aws_nat_gateway" "qbill" {
  allocation_id = aws_eip.nat.id
  subnet_id     = aws_subnet.public.id

  tags = {
    Name = var.name
  }
}

resource "aws_route" "private_to_nat" {
  route_table_id         = aws_route_table.private.id
  destination_cidr_block = "0.0.0.0/0"
  nat_gateway_id         = aws_nat_gateway.qbill.id
}

# ---------------------------------------------------------------------------------------------
# VPC flow logs (all traffic, to an encrypted log group)
# ---------------------------------------------------------------------------------------------

resource "aws_cloudwatch_log_group" "flow_logs" {
  name              = "/aws/vpc/${var.name}/flow-logs"
  retention_in_days = var.audit_log_retention_days
  kms_key_id        = aws_kms_key.data.arn
}

data "aws_iam_policy_document" "flow_logs_assume" {
  statement {
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["vpc-flow-logs.amazonaws.com"]
    }

    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
}

resource "aws_iam_role" "flow_logs" {
  name               = "${var.name}-vpc-flow-logs"
  assume_role_policy = data.aws_iam_policy_document.flow_logs_assume.json
}

data "aws_iam_policy_document" "flow_logs" {
  statement {
    actions = [
      "logs:CreateLogStream",
      "logs:PutLogEvents",
      "logs:DescribeLogStreams",
    ]
    resources = ["${aws_cloudwatch_log_group.flow_logs.arn}:*"]
  }

  # The service checks that its destination group exists.
  statement {
    actions   = ["logs:DescribeLogGroups"]
    resources = ["arn:${local.partition}:logs:${local.region}:${local.account_id}:log-group:*"]
  }
}

resource "aws_iam_role_policy" "flow_logs" {
  name   = "write-flow-logs"
  role   = aws_iam_role.flow_logs.id
  policy = data.aws_iam_policy_document.flow_logs.json
}

resource "aws_flow_log" "qbill" {
  vpc_id               = aws_vpc.qbill.id
  traffic_type         = "ALL"
  log_destination_type = "cloud-watch-logs"
  log_destination      = aws_cloudwatch_log_group.flow_logs.arn
  iam_role_arn         = aws_iam_role.flow_logs.arn
}

# ---------------------------------------------------------------------------------------------
# Security groups: only the flows that exist.
#   worker    -> database (5432), proxy (5432, with use_rds_proxy), redis (6379), endpoints (443)
#   admin     -> database (5432), proxy (5432, with use_rds_proxy), endpoints (443: its secrets)
#   sweeper   -> redis (6379), endpoints (443: SQS, its secret)
#   proxy     -> database (5432), endpoints (443: the proxy reads its secrets)
# Terraform removes the default allow-all egress rule from every group it creates.
# ---------------------------------------------------------------------------------------------

resource "aws_security_group" "worker" {
  name        = "${var.name}-worker"
  description = "qbill Lambda worker: no inbound; outbound only to PostgreSQL, Redis and the VPC endpoints"
  vpc_id      = aws_vpc.qbill.id

  tags = {
    Name = "${var.name}-worker"
  }
}

resource "aws_security_group" "admin" {
  name        = "${var.name}-admin"
  description = "qbill admin function: no inbound; outbound only to PostgreSQL and the VPC endpoints"
  vpc_id      = aws_vpc.qbill.id

  tags = {
    Name = "${var.name}-admin"
  }
}

resource "aws_security_group" "sweeper" {
  name        = "${var.name}-sweeper"
  description = "qbill sweeper: no inbound; outbound only to Redis and the VPC endpoints"
  vpc_id      = aws_vpc.qbill.id

  tags = {
    Name = "${var.name}-sweeper"
  }
}

resource "aws_security_group" "database" {
  name        = "${var.name}-database"
  description = "qbill PostgreSQL: inbound 5432 from the worker (or the RDS Proxy) only"
  vpc_id      = aws_vpc.qbill.id

  tags = {
    Name = "${var.name}-database"
  }
}

resource "aws_security_group" "proxy" {
  #checkov:skip=CKV2_AWS_5:Attached to aws_db_proxy.qbill (vpc_security_group_ids); checkov's list of attachable resource types for this check does not include aws_db_proxy.
  count = var.use_rds_proxy ? 1 : 0

  name        = "${var.name}-rds-proxy"
  description = "qbill RDS Proxy: inbound 5432 from the worker; outbound to PostgreSQL and Secrets Manager"
  vpc_id      = aws_vpc.qbill.id

  tags = {
    Name = "${var.name}-rds-proxy"
  }
}

resource "aws_security_group" "redis" {
  name        = "${var.name}-redis"
  description = "qbill ElastiCache Redis: inbound 6379 from the worker only"
  vpc_id      = aws_vpc.qbill.id

  tags = {
    Name = "${var.name}-redis"
  }
}

# The description predates the SES and Cognito endpoints; it stays as it is because changing a
# security group's description replaces the group.
resource "aws_security_group" "endpoints" {
  name        = "${var.name}-vpc-endpoints"
  description = "qbill interface VPC endpoints (SQS, Secrets Manager): inbound 443 from the worker and the RDS Proxy"
  vpc_id      = aws_vpc.qbill.id

  tags = {
    Name = "${var.name}-vpc-endpoints"
  }
}

# worker -> PostgreSQL, directly or through the proxy
resource "aws_security_group_rule" "worker_to_database" {
  type                     = "egress"
  description              = "PostgreSQL (TLS) to the database or the RDS Proxy"
  security_group_id        = aws_security_group.worker.id
  protocol                 = "tcp"
  from_port                = 5432
  to_port                  = 5432
  source_security_group_id = var.use_rds_proxy ? aws_security_group.proxy[0].id : aws_security_group.database.id
}

resource "aws_security_group_rule" "database_from_worker" {
  count = var.use_rds_proxy ? 0 : 1

  type                     = "ingress"
  description              = "PostgreSQL from the qbill worker"
  security_group_id        = aws_security_group.database.id
  protocol                 = "tcp"
  from_port                = 5432
  to_port                  = 5432
  source_security_group_id = aws_security_group.worker.id
}

resource "aws_security_group_rule" "proxy_from_worker" {
  count = var.use_rds_proxy ? 1 : 0

  type                     = "ingress"
  description              = "PostgreSQL from the qbill worker"
  security_group_id        = aws_security_group.proxy[0].id
  protocol                 = "tcp"
  from_port                = 5432
  to_port                  = 5432
  source_security_group_id = aws_security_group.worker.id
}

resource "aws_security_group_rule" "proxy_to_database" {
  count = var.use_rds_proxy ? 1 : 0

  type                     = "egress"
  description              = "PostgreSQL to the database"
  security_group_id        = aws_security_group.proxy[0].id
  protocol                 = "tcp"
  from_port                = 5432
  to_port                  = 5432
  source_security_group_id = aws_security_group.database.id
}

resource "aws_security_group_rule" "database_from_proxy" {
  count = var.use_rds_proxy ? 1 : 0

  type                     = "ingress"
  description              = "PostgreSQL from the RDS Proxy"
  security_group_id        = aws_security_group.database.id
  protocol                 = "tcp"
  from_port                = 5432
  to_port                  = 5432
  source_security_group_id = aws_security_group.proxy[0].id
}

resource "aws_security_group_rule" "proxy_to_endpoints" {
  count = var.use_rds_proxy ? 1 : 0

  type                     = "egress"
  description              = "HTTPS to the Secrets Manager endpoint (the proxy reads its credentials)"
  security_group_id        = aws_security_group.proxy[0].id
  protocol                 = "tcp"
  from_port                = 443
  to_port                  = 443
  source_security_group_id = aws_security_group.endpoints.id
}

resource "aws_security_group_rule" "endpoints_from_proxy" {
  count = var.use_rds_proxy ? 1 : 0

  type                     = "ingress"
  description              = "HTTPS from the RDS Proxy"
  security_group_id        = aws_security_group.endpoints.id
  protocol                 = "tcp"
  from_port                = 443
  to_port                  = 443
  source_security_group_id = aws_security_group.proxy[0].id
}

# worker -> Redis
resource "aws_security_group_rule" "worker_to_redis" {
  type                     = "egress"
  description              = "Redis (TLS) to ElastiCache"
  security_group_id        = aws_security_group.worker.id
  protocol                 = "tcp"
  from_port                = 6379
  to_port                  = 6379
  source_security_group_id = aws_security_group.redis.id
}

resource "aws_security_group_rule" "redis_from_worker" {
  type                     = "ingress"
  description              = "Redis from the qbill worker"
  security_group_id        = aws_security_group.redis.id
  protocol                 = "tcp"
  from_port                = 6379
  to_port                  = 6379
  source_security_group_id = aws_security_group.worker.id
}

# worker -> S3 (the gateway endpoint's prefix list: S3's addresses in this region, reached through
# the endpoint, whose policy admits the documents only)
resource "aws_security_group_rule" "worker_to_s3" {
  type              = "egress"
  description       = "HTTPS to S3 through the gateway endpoint (documents)"
  security_group_id = aws_security_group.worker.id
  protocol          = "tcp"
  from_port         = 443
  to_port           = 443
  prefix_list_ids   = [aws_vpc_endpoint.s3.prefix_list_id]
}

# worker -> the payments processor (api.stripe.com), the providers' webhook endpoints and
# EventBridge, through the NAT gateway. Stripe publishes its API's addresses but changes them, and
# providers' endpoints are anywhere public; the rule names the port, TLS and the certificates do
# the rest (the worker verifies them), the worker refuses any webhook address that is not public
# (events::outbound), and the flow logs record every connection.
resource "aws_security_group_rule" "worker_to_processor" {
  #checkov:skip=CKV_AWS_382:Egress to the internet on 443 only, for the payments processor and providers' webhooks, whose addresses are not fixed.
  type              = "egress"
  description       = "HTTPS to the payments processor, providers' webhooks and EventBridge through the NAT gateway"
  security_group_id = aws_security_group.worker.id
  protocol          = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_blocks       = ["0.0.0.0/0"]
}

# worker -> VPC endpoints
resource "aws_security_group_rule" "worker_to_endpoints" {
  type                     = "egress"
  description              = "HTTPS to the VPC endpoints (SQS, Secrets Manager, SES, Cognito)"
  security_group_id        = aws_security_group.worker.id
  protocol                 = "tcp"
  from_port                = 443
  to_port                  = 443
  source_security_group_id = aws_security_group.endpoints.id
}

resource "aws_security_group_rule" "endpoints_from_worker" {
  type                     = "ingress"
  description              = "HTTPS from the qbill worker"
  security_group_id        = aws_security_group.endpoints.id
  protocol                 = "tcp"
  from_port                = 443
  to_port                  = 443
  source_security_group_id = aws_security_group.worker.id
}

# admin -> PostgreSQL (as the master user), directly or through the proxy
resource "aws_security_group_rule" "admin_to_database" {
  type                     = "egress"
  description              = "PostgreSQL (TLS) to the database or the RDS Proxy"
  security_group_id        = aws_security_group.admin.id
  protocol                 = "tcp"
  from_port                = 5432
  to_port                  = 5432
  source_security_group_id = var.use_rds_proxy ? aws_security_group.proxy[0].id : aws_security_group.database.id
}

resource "aws_security_group_rule" "database_from_admin" {
  count = var.use_rds_proxy ? 0 : 1

  type                     = "ingress"
  description              = "PostgreSQL from the qbill admin function"
  security_group_id        = aws_security_group.database.id
  protocol                 = "tcp"
  from_port                = 5432
  to_port                  = 5432
  source_security_group_id = aws_security_group.admin.id
}

resource "aws_security_group_rule" "proxy_from_admin" {
  count = var.use_rds_proxy ? 1 : 0

  type                     = "ingress"
  description              = "PostgreSQL from the qbill admin function"
  security_group_id        = aws_security_group.proxy[0].id
  protocol                 = "tcp"
  from_port                = 5432
  to_port                  = 5432
  source_security_group_id = aws_security_group.admin.id
}

# admin and sweeper -> VPC endpoints (Secrets Manager; SQS for the sweeper)
resource "aws_security_group_rule" "functions_to_endpoints" {
  for_each = {
    admin   = aws_security_group.admin.id
    sweeper = aws_security_group.sweeper.id
  }

  type                     = "egress"
  description              = "HTTPS to the VPC endpoints"
  security_group_id        = each.value
  protocol                 = "tcp"
  from_port                = 443
  to_port                  = 443
  source_security_group_id = aws_security_group.endpoints.id
}

resource "aws_security_group_rule" "endpoints_from_functions" {
  for_each = {
    admin   = aws_security_group.admin.id
    sweeper = aws_security_group.sweeper.id
  }

  type                     = "ingress"
  description              = "HTTPS from the qbill ${each.key} function"
  security_group_id        = aws_security_group.endpoints.id
  protocol                 = "tcp"
  from_port                = 443
  to_port                  = 443
  source_security_group_id = each.value
}

# sweeper -> Redis (the reply queues' last-reply stamps)
resource "aws_security_group_rule" "sweeper_to_redis" {
  type                     = "egress"
  description              = "Redis (TLS) to ElastiCache"
  security_group_id        = aws_security_group.sweeper.id
  protocol                 = "tcp"
  from_port                = 6379
  to_port                  = 6379
  source_security_group_id = aws_security_group.redis.id
}

resource "aws_security_group_rule" "redis_from_sweeper" {
  type                     = "ingress"
  description              = "Redis from the qbill sweeper"
  security_group_id        = aws_security_group.redis.id
  protocol                 = "tcp"
  from_port                = 6379
  to_port                  = 6379
  source_security_group_id = aws_security_group.sweeper.id
}

# ---------------------------------------------------------------------------------------------
# Interface endpoints. Private DNS makes the regional service names resolve to them, so the
# worker's SDK needs no endpoint configuration.
#   sqs, secretsmanager  replies and reply queues; the stack's secrets
#   email                the SES API (email.<region>.amazonaws.com, v1 and v2 alike), when the
#                        worker mails in this region (ses_region). Not email-smtp: that endpoint
#                        serves SMTP only, and the worker calls the API.
#   cognito-idp          identity = "cognito": cognito-idp.<region>.amazonaws.com, the host of the
#                        pool's issuer and JWKS. README.md says what AWS documents about it.
# ---------------------------------------------------------------------------------------------

# Each endpoint's policy admits what the stack does through it and nothing else, and only for
# this account's principals (the unauthenticated JWKS read excepted):
#   sqs             the worker's reply queues (create, answer) and the sweeper's (list, examine,
#                   delete), and the sweep queue; no other queue of the account
#   secretsmanager  the stack's secrets, read (the functions and the RDS Proxy)
#   email           sending as the stack's SES identity (and to the sandbox's test recipients)
#   cognito-idp     the stack's user pool; the JWKS is read without credentials
locals {
  account_principals = {
    Principal = { AWS = "*" }
    Condition = { StringEquals = { "aws:PrincipalAccount" = local.account_id } }
  }

  interface_endpoint_policies = {
    sqs = jsonencode({
      Version = "2012-10-17"
      Statement = [
        merge(local.account_principals, {
          Sid    = "TheStacksQueues"
          Effect = "Allow"
          Action = [
            "sqs:CreateQueue",
            "sqs:SendMessage",
            "sqs:GetQueueUrl",
            "sqs:ReceiveMessage",
            "sqs:DeleteMessage",
            "sqs:ChangeMessageVisibility",
            "sqs:GetQueueAttributes",
            "sqs:DeleteQueue",
          ]
          Resource = [local.reply_queue_arn_pattern, aws_sqs_queue.sweep.arn]
        }),
        merge(local.account_principals, {
          Sid      = "ListTheAccountsQueues"
          Effect   = "Allow"
          Action   = ["sqs:ListQueues"]
          Resource = [local.account_queues_arn]
        }),
      ]
    })
    secretsmanager = jsonencode({
      Version = "2012-10-17"
      Statement = [
        merge(local.account_principals, {
          Sid    = "TheStacksSecrets"
          Effect = "Allow"
          Action = ["secretsmanager:GetSecretValue"]
          Resource = [
            aws_secretsmanager_secret.jwt.arn,
            aws_secretsmanager_secret.redis_auth.arn,
            aws_secretsmanager_secret.database_password.arn,
            aws_secretsmanager_secret.first_operator.arn,
            aws_db_instance.qbill.master_user_secret[0].secret_arn,
          ]
        }),
      ]
    })
    email = jsonencode({
      Version = "2012-10-17"
      Statement = [
        merge(local.account_principals, {
          Sid      = "SendAsTheStacksIdentity"
          Effect   = "Allow"
          Action   = ["ses:SendEmail", "ses:SendRawEmail"]
          Resource = concat([local.mail_identity_arn], [for recipient in aws_ses_email_identity.sandbox_recipient : recipient.arn])
        }),
      ]
    })
    cognito-idp = jsonencode({
      Version = "2012-10-17"
      Statement = [
        {
          Sid       = "TheStacksUserPool"
          Effect    = "Allow"
          Principal = "*"
          Action    = ["cognito-idp:*"]
          Resource  = [local.cognito ? aws_cognito_user_pool.qbill[0].arn : null]
        },
      ]
    })
  }
}

resource "aws_vpc_endpoint" "interface" {
  for_each = toset(local.interface_endpoint_services)

  vpc_id              = aws_vpc.qbill.id
  service_name        = "com.amazonaws.${local.region}.${each.key}"
  vpc_endpoint_type   = "Interface"
  private_dns_enabled = true
  subnet_ids          = aws_subnet.private[*].id
  security_group_ids  = [aws_security_group.endpoints.id]
  policy              = local.interface_endpoint_policies[each.key]

  tags = {
    Name = "${var.name}-${each.key}"
  }
}

# ---------------------------------------------------------------------------------------------
# S3 gateway endpoint: a route on the private route table to S3 in this region, for the
# documents bucket (documents.tf). Gateway endpoints cost nothing. Its policy admits what the
# worker does there and nothing else: putting and getting objects under documents/ in that one
# bucket. Nothing else in the VPC uses S3 today; anything that will must be added here.
# (Clients fetch documents with presigned links from the internet, not through the endpoint.)
# ---------------------------------------------------------------------------------------------

data "aws_iam_policy_document" "s3_endpoint" {
  statement {
    sid       = "OnlyTheDocuments"
    actions   = ["s3:PutObject", "s3:GetObject"]
    resources = [local.documents_object_arns]

    principals {
      type        = "AWS"
      identifiers = ["*"]
    }

    # This account's principals only (the worker's role): no credentials from elsewhere.
    condition {
      test     = "StringEquals"
      variable = "aws:PrincipalAccount"
      values   = [local.account_id]
    }
  }
}

resource "aws_vpc_endpoint" "s3" {
  vpc_id            = aws_vpc.qbill.id
  service_name      = "com.amazonaws.${local.region}.s3"
  vpc_endpoint_type = "Gateway"
  route_table_ids   = [aws_route_table.private.id]
  policy            = data.aws_iam_policy_document.s3_endpoint.json

  tags = {
    Name = "${var.name}-s3"
  }
}
