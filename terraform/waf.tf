# A regional WAFv2 web ACL in front of the stage, on by default. Anonymous POST /auth* requests
# with fresh queue_names each make the worker create a reply queue: the API's own throttles
# (apigateway.tf) cap the stage as a whole, these rules cap one source address.
#   auth-per-ip       POST to an /auth* path: waf_auth_rate_limit per source IP in 5 minutes
#   requests-per-ip   any request: waf_rate_limit per source IP in 5 minutes
#   known-bad-inputs  AWS's managed rule group of request patterns known to be malicious (Log4j's
#                     JNDI lookups, localhost Host headers, ...), which nothing legitimate sends
# Bring your own web ACL with waf_web_acl_arn: this one is then not created, and yours is
# associated instead.

locals {
  waf_own         = var.waf_web_acl_arn == null
  waf_web_acl_arn = coalesce(var.waf_web_acl_arn, one(aws_wafv2_web_acl.qbill[*].arn))
}

resource "aws_wafv2_web_acl" "qbill" {
  count = local.waf_own ? 1 : 0

  name        = var.name
  description = "qbill API: per-IP rate limits (tighter on POST /auth*) and known bad inputs"
  scope       = "REGIONAL"

  default_action {
    allow {}
  }

  rule {
    name     = "auth-per-ip"
    priority = 10

    action {
      block {}
    }

    statement {
      rate_based_statement {
        limit              = var.waf_auth_rate_limit
        aggregate_key_type = "IP"

        scope_down_statement {
          and_statement {
            statement {
              byte_match_statement {
                search_string         = "POST"
                positional_constraint = "EXACTLY"

                field_to_match {
                  method {}
                }

                text_transformation {
                  priority = 0
                  type     = "NONE"
                }
              }
            }

            # The path as WAF sees it starts with the stage (/v1/auth...), or a custom domain's
            # base path; no other route has an /auth segment.
            statement {
              byte_match_statement {
                search_string         = "/auth"
                positional_constraint = "CONTAINS"

                field_to_match {
                  uri_path {}
                }

                text_transformation {
                  priority = 0
                  type     = "NONE"
                }
              }
            }
          }
        }
      }
    }

    visibility_config {
      cloudwatch_metrics_enabled = true
      metric_name                = "${var.name}-auth-per-ip"
      sampled_requests_enabled   = true
    }
  }

  rule {
    name     = "requests-per-ip"
    priority = 20

    action {
      block {}
    }

    statement {
      rate_based_statement {
        limit              = var.waf_rate_limit
        aggregate_key_type = "IP"
      }
    }

    visibility_config {
      cloudwatch_metrics_enabled = true
      metric_name                = "${var.name}-requests-per-ip"
      sampled_requests_enabled   = true
    }
  }

  rule {
    name     = "known-bad-inputs"
    priority = 30

    override_action {
      none {}
    }

    statement {
      managed_rule_group_statement {
        vendor_name = "AWS"
        name        = "AWSManagedRulesKnownBadInputsRuleSet"
      }
    }

    visibility_config {
      cloudwatch_metrics_enabled = true
      metric_name                = "${var.name}-known-bad-inputs"
      sampled_requests_enabled   = true
    }
  }

  visibility_config {
    cloudwatch_metrics_enabled = true
    metric_name                = var.name
    sampled_requests_enabled   = true
  }
}

# The stage is associated with exactly one web ACL: the stack's own, or the one brought.
resource "aws_wafv2_web_acl_association" "own" {
  count = local.waf_own ? 1 : 0

  resource_arn = aws_api_gateway_stage.qbill.arn
  web_acl_arn  = aws_wafv2_web_acl.qbill[0].arn
}

resource "aws_wafv2_web_acl_association" "qbill" {
  count = local.waf_own ? 0 : 1

  resource_arn = aws_api_gateway_stage.qbill.arn
  web_acl_arn  = var.waf_web_acl_arn
}

# WAF's log of every request it saw, with its verdict; WAF requires the aws-waf-logs- prefix.
# Bearer tokens are redacted.
resource "aws_cloudwatch_log_group" "waf" {
  count = local.waf_own ? 1 : 0

  name              = "aws-waf-logs-${var.name}"
  retention_in_days = var.audit_log_retention_days
  kms_key_id        = aws_kms_key.data.arn
}

resource "aws_wafv2_web_acl_logging_configuration" "qbill" {
  count = local.waf_own ? 1 : 0

  resource_arn            = aws_wafv2_web_acl.qbill[0].arn
  log_destination_configs = [aws_cloudwatch_log_group.waf[0].arn]

  redacted_fields {
    single_header {
      name = "authorization"
    }
  }
}
