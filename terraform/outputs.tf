output "gateway_url" {
  description = "Invoke URL of the API stage (QBILL_GATEWAY_URL for clients): POST <url>/auth, GET <url>/replies/<queue_name>, ..."
  value       = aws_api_gateway_stage.qbill.invoke_url
}

output "rest_api_id" {
  description = "ID of the REST API."
  value       = aws_api_gateway_rest_api.qbill.id
}

output "request_queue_url" {
  description = "URL of the shared request queue."
  value       = aws_sqs_queue.requests.url
}

output "dead_letter_queue_url" {
  description = "URL of the request queue's dead-letter queue."
  value       = aws_sqs_queue.requests_dlq.url
}

output "reply_queue_prefix" {
  description = "Reply queues are named this prefix plus the client's queue_name (a UUID)."
  value       = local.reply_queue_prefix
}

output "lambda_function_name" {
  description = "Name of the worker function (for aws lambda invoke ... overdue, notify, due-soon)."
  value       = aws_lambda_function.worker.function_name
}

output "admin_function_name" {
  description = "Name of the admin function (for aws lambda invoke ... migrate, create-operator)."
  value       = aws_lambda_function.admin.function_name
}

output "sweeper_function_name" {
  description = "Name of the reply-queue sweeper (for aws lambda invoke ... sweep)."
  value       = aws_lambda_function.sweeper.function_name
}

output "sweep_queue_url" {
  description = "URL of the sweeper's task queue (one task per shard of reply queues)."
  value       = aws_sqs_queue.sweep.url
}

output "sweep_dead_letter_queue_url" {
  description = "URL of the sweep queue's dead-letter queue."
  value       = aws_sqs_queue.sweep_dlq.url
}

output "waf_web_acl_arn" {
  description = "ARN of the WAFv2 web ACL associated with the stage: the stack's own, or waf_web_acl_arn."
  value       = local.waf_web_acl_arn
}

output "dashboard_name" {
  description = "Name of the CloudWatch dashboard of the stack."
  value       = aws_cloudwatch_dashboard.qbill.dashboard_name
}

output "dashboard_url" {
  description = "Console address of the CloudWatch dashboard."
  value       = "${local.console_url}/cloudwatch/home?region=${local.region}#dashboards/dashboard/${aws_cloudwatch_dashboard.qbill.dashboard_name}"
}

output "database_endpoint" {
  description = "Host the worker connects to: the RDS instance, or the RDS Proxy with use_rds_proxy."
  value       = local.database_host
}

output "database_instance_endpoint" {
  description = "Address of the RDS instance itself."
  value       = aws_db_instance.qbill.address
}

output "redis_endpoint" {
  description = "Primary endpoint of the ElastiCache replication group (TLS, port 6379)."
  value       = aws_elasticache_replication_group.qbill.primary_endpoint_address
}

output "jwt_secret_arn" {
  description = "Secrets Manager secret holding the JWT signing key (bare string)."
  value       = aws_secretsmanager_secret.jwt.arn
}

output "redis_auth_secret_arn" {
  description = "Secrets Manager secret holding the ElastiCache AUTH token (bare string)."
  value       = aws_secretsmanager_secret.redis_auth.arn
}

output "database_password_secret_arn" {
  description = "Secrets Manager secret holding the worker login's password, JSON {username, password}."
  value       = aws_secretsmanager_secret.database_password.arn
}

output "database_master_secret_arn" {
  description = "RDS-managed secret of the master user, JSON {username, password} (read by the admin function only)."
  value       = aws_db_instance.qbill.master_user_secret[0].secret_arn
}

output "first_operator_secret_arn" {
  description = "Secrets Manager secret holding the first operator's generated credentials, JSON {username, password} (read by the create-operator invocation)."
  value       = aws_secretsmanager_secret.first_operator.arn
}

output "documents_bucket" {
  description = "Name of the private bucket the worker keeps documents in (under documents/; QBILL_DOCUMENTS_BUCKET). Clients read them only through the presigned links the worker hands out."
  value       = aws_s3_bucket.documents.bucket
}

output "web_url" {
  description = "URL of the household web app (QBILL_WEB_URL; mails link to it, and its origin is the one the API allows): web_url when set, else the distribution's https://<id>.cloudfront.net."
  value       = local.web_url
}

output "web_bucket" {
  description = "Name of the private bucket the web app's files are deployed to (aws s3 sync web/dist ... --exclude config.json); only the distribution reads it."
  value       = aws_s3_bucket.web.bucket
}

output "web_distribution_id" {
  description = "ID of the web app's CloudFront distribution (for aws cloudfront create-invalidation after a deploy)."
  value       = aws_cloudfront_distribution.web.id
}

output "web_distribution_domain_name" {
  description = "The distribution's own domain name (<id>.cloudfront.net): the target of a custom domain's DNS record (CNAME, or a Route 53 alias)."
  value       = aws_cloudfront_distribution.web.domain_name
}

output "vpc_id" {
  description = "ID of the VPC."
  value       = aws_vpc.qbill.id
}

output "private_subnet_ids" {
  description = "IDs of the private subnets."
  value       = aws_subnet.private[*].id
}

output "mail_identity" {
  description = "The SES identity the worker mails as: mail_from_address, or mail_domain when set. It must be verified before any mail goes out."
  value       = var.mail_domain == null ? aws_ses_email_identity.sender[0].email : aws_ses_domain_identity.sender[0].domain
}

output "mail_identity_arn" {
  description = "ARN of that SES identity (the worker may send as it and nothing else)."
  value       = local.mail_identity_arn
}

output "mail_dns_records" {
  description = "With mail_domain: the DNS records that verify the domain and turn on its DKIM signing (publish them, then wait for SES). Empty without mail_domain."
  value = var.mail_domain == null ? [] : concat(
    [{
      type  = "TXT"
      name  = "_amazonses.${var.mail_domain}"
      value = aws_ses_domain_identity.sender[0].verification_token
    }],
    [for token in aws_ses_domain_dkim.sender[0].dkim_tokens : {
      type  = "CNAME"
      name  = "${token}._domainkey.${var.mail_domain}"
      value = "${token}.dkim.amazonses.com"
    }],
  )
}

output "cognito_user_pool_id" {
  description = "With identity = cognito: the user pool's id (the web and mobile clients sign in to it). Null otherwise."
  value       = one(aws_cognito_user_pool.qbill[*].id)
}

output "cognito_user_pool_client_id" {
  description = "With identity = cognito: the public app client's id (no secret). Null otherwise."
  value       = one(aws_cognito_user_pool_client.web[*].id)
}

output "cognito_issuer" {
  description = "With identity = cognito: the issuer of the pool's tokens (QBILL_COGNITO_ISSUER; its JWKS is <issuer>/.well-known/jwks.json). Null otherwise."
  value       = local.cognito_issuer
}
