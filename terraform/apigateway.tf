# The REST API, generated entirely from gateway-config/openapi.yaml: every POST is an SQS
# SendMessage integration on the request queue, every GET a ReceiveMessage on the client's
# reply queue, both made with the gateway role (credentials: in the document). No Lambda
# authorizer, no proxy: request bodies are validated against the document's JSON Schemas, and
# tokens are checked by the worker.
#
# The API is created empty and its definition put on it by aws_api_gateway_rest_api_put. The
# definition allows the web app's origin (CORS), the distribution's name by default, and the
# distribution's Content-Security-Policy names this API's id (web.tf): with the definition in the
# API's own body the two would wait for each other.

resource "aws_api_gateway_rest_api" "qbill" {
  name        = var.name
  description = local.api_description

  endpoint_configuration {
    types = ["REGIONAL"]
  }

  lifecycle {
    create_before_destroy = true
  }
}

# PutRestApi in overwrite mode: the definition replaces the API's resources, methods and models,
# and its info.title and info.description become the API's name and description, which main.tf
# sets to the ones above so that the two resources agree. A new definition is a new put.
resource "aws_api_gateway_rest_api_put" "qbill" {
  rest_api_id = aws_api_gateway_rest_api.qbill.id
  body        = local.openapi_body

  lifecycle {
    # Browsers may call the API from the web app's origin only: one scheme://host[:port], never a
    # wildcard, which would let any site's scripts read the answers.
    precondition {
      condition     = local.web_origin != "*" && can(regex("^https?://[^/?#*\\s]+$", local.web_origin))
      error_message = "The API's allowed CORS origin must be one origin such as https://billing.example.com, not \"*\"."
    }
  }
}

resource "aws_api_gateway_deployment" "qbill" {
  rest_api_id = aws_api_gateway_rest_api.qbill.id
  description = "qbill API, body ${substr(sha1(local.openapi_body), 0, 12)}"

  # A new deployment whenever the rendered document changes, taken once it is put.
  triggers = {
    redeployment = sha1(local.openapi_body)
  }

  depends_on = [aws_api_gateway_rest_api_put.qbill]

  lifecycle {
    create_before_destroy = true
  }
}

# ---------------------------------------------------------------------------------------------
# Logging. API Gateway writes to CloudWatch Logs through one role per account and region,
# configured by aws_api_gateway_account.
# ---------------------------------------------------------------------------------------------

data "aws_iam_policy_document" "apigateway_cloudwatch_assume" {
  statement {
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["apigateway.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "apigateway_cloudwatch" {
  count = var.manage_api_gateway_account ? 1 : 0

  name               = "${var.name}-apigateway-cloudwatch"
  description        = "API Gateway account setting: writes execution and access logs of this region's APIs"
  assume_role_policy = data.aws_iam_policy_document.apigateway_cloudwatch_assume.json
}

# The account setting serves every REST API of the region, so the role carries the AWS managed
# policy made for it rather than one scoped to qbill's log groups.
resource "aws_iam_role_policy_attachment" "apigateway_cloudwatch" {
  count = var.manage_api_gateway_account ? 1 : 0

  role       = aws_iam_role.apigateway_cloudwatch[0].name
  policy_arn = "arn:${local.partition}:iam::aws:policy/service-role/AmazonAPIGatewayPushToCloudWatchLogs"
}

resource "aws_api_gateway_account" "qbill" {
  count = var.manage_api_gateway_account ? 1 : 0

  cloudwatch_role_arn = aws_iam_role.apigateway_cloudwatch[0].arn

  depends_on = [aws_iam_role_policy_attachment.apigateway_cloudwatch]
}

resource "aws_cloudwatch_log_group" "api_access" {
  name              = "/aws/apigateway/${var.name}/${var.stage_name}/access"
  retention_in_days = var.audit_log_retention_days
  kms_key_id        = aws_kms_key.data.arn
}

# API Gateway would create the execution log group itself, unencrypted and kept forever.
resource "aws_cloudwatch_log_group" "api_execution" {
  #checkov:skip=CKV_AWS_338:Operational logs (integration errors); retention is the operator's log_retention_days (default 30). The audit trail is the access log group, kept audit_log_retention_days.
  name              = "API-Gateway-Execution-Logs_${aws_api_gateway_rest_api.qbill.id}/${var.stage_name}"
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.data.arn
}

# ---------------------------------------------------------------------------------------------
# Stage, method settings, usage plan
# ---------------------------------------------------------------------------------------------

resource "aws_api_gateway_stage" "qbill" {
  #checkov:skip=CKV_AWS_120:No response caching: every POST must reach SQS, and a GET consumes replies from a queue, so a cached answer would be wrong.
  #checkov:skip=CKV2_AWS_77:The stack's web ACL (waf.tf) runs AWSManagedRulesKnownBadInputsRuleSet, which holds the Log4j rules; the check also demands AWSManagedRulesAnonymousIpList, which blocks VPN, Tor and hosting-provider addresses, and households on a VPN must reach the API. A brought web ACL (waf_web_acl_arn) is the operator's to configure.
  #checkov:skip=CKV2_AWS_51:Public API for end-user clients that authenticate with a bearer token checked by the worker; the backend is SQS, not an HTTP server that could verify a client certificate.
  rest_api_id   = aws_api_gateway_rest_api.qbill.id
  deployment_id = aws_api_gateway_deployment.qbill.id
  stage_name    = var.stage_name
  description   = "qbill ${var.stage_name}"

  xray_tracing_enabled  = var.api_xray_tracing_enabled
  cache_cluster_enabled = false

  access_log_settings {
    destination_arn = aws_cloudwatch_log_group.api_access.arn
    format = jsonencode({
      requestId          = "$context.requestId"
      extendedRequestId  = "$context.extendedRequestId"
      requestTime        = "$context.requestTime"
      sourceIp           = "$context.identity.sourceIp"
      userAgent          = "$context.identity.userAgent"
      httpMethod         = "$context.httpMethod"
      resourcePath       = "$context.resourcePath"
      status             = "$context.status"
      responseLength     = "$context.responseLength"
      responseLatency    = "$context.responseLatency"
      integrationStatus  = "$context.integration.status"
      integrationLatency = "$context.integration.latency"
      integrationError   = "$context.integration.error"
      validationError    = "$context.error.validationErrorString"
      errorMessage       = "$context.error.message"
    })
  }

  depends_on = [
    aws_api_gateway_account.qbill,
    aws_cloudwatch_log_group.api_execution,
  ]
}

resource "aws_api_gateway_method_settings" "all" {
  #checkov:skip=CKV_AWS_225:No response caching: every POST must reach SQS, and a GET consumes replies from a queue, so a cached answer would be wrong.
  rest_api_id = aws_api_gateway_rest_api.qbill.id
  stage_name  = aws_api_gateway_stage.qbill.stage_name
  method_path = "*/*"

  settings {
    metrics_enabled        = true
    logging_level          = var.api_logging_level
    data_trace_enabled     = false # would log request bodies, which carry passwords and tokens
    throttling_rate_limit  = var.api_throttle_rate_limit
    throttling_burst_limit = var.api_throttle_burst_limit
    caching_enabled        = false
    cache_data_encrypted   = true
  }
}

# The anonymous POST /auth* methods get a lower throttle than the rest: each can make the worker
# create a reply queue, and a login costs an Argon2 check. One setting per method; with Cognito
# the routes are not deployed and neither are these. (method_path: the resource path with every
# "/" written "~1", then the method, as API Gateway names a method's settings.)
locals {
  auth_post_paths = [
    for path, item in local.openapi_paths : path
    if startswith(path, "/auth") && contains(keys(item), "post")
  ]
}

resource "aws_api_gateway_method_settings" "auth" {
  #checkov:skip=CKV_AWS_225:No response caching: every POST must reach SQS.
  for_each = toset(local.auth_post_paths)

  rest_api_id = aws_api_gateway_rest_api.qbill.id
  stage_name  = aws_api_gateway_stage.qbill.stage_name
  method_path = "${replace(each.key, "/", "~1")}/POST"

  # A method's settings replace the stage-wide ones: all of them are repeated.
  settings {
    metrics_enabled        = true
    logging_level          = var.api_logging_level
    data_trace_enabled     = false # would log request bodies, which carry passwords and tokens
    throttling_rate_limit  = var.api_auth_throttle_rate_limit
    throttling_burst_limit = var.api_auth_throttle_burst_limit
    caching_enabled        = false
    cache_data_encrypted   = true
  }

  lifecycle {
    precondition {
      condition     = var.api_auth_throttle_rate_limit <= var.api_throttle_rate_limit && var.api_auth_throttle_burst_limit <= var.api_throttle_burst_limit
      error_message = "The POST /auth* throttle (api_auth_throttle_*) must not exceed the stage's (api_throttle_*)."
    }
  }
}

# Throttle for API keys a client may later be given; without keys, the stage-wide method
# settings above are what limits traffic.
resource "aws_api_gateway_usage_plan" "qbill" {
  name        = "${var.name}-${var.stage_name}"
  description = "qbill ${var.stage_name}: request rate and burst"

  api_stages {
    api_id = aws_api_gateway_rest_api.qbill.id
    stage  = aws_api_gateway_stage.qbill.stage_name
  }

  throttle_settings {
    rate_limit  = var.api_throttle_rate_limit
    burst_limit = var.api_throttle_burst_limit
  }
}
