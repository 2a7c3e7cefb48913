# A regional WAFv2 web ACL in front of the stage, on by default. A POST that carries no bearer
# token makes the worker answer on the reply queue it names, creating the queue first: a login
# (POST /auth*) and every other anonymous POST alike, right or wrong, with a fresh queue_name each
# time. The API's own throttles (apigateway.tf) cap the stage as a whole; these rules cap one
# source address.
#   tokenless-post    counts and labels (qbill:tokenless-post) every POST whose Authorization
#                     header is not "Bearer ..." (or that has none), but the payments
#                     processor's webhooks (/webhooks/stripe); blocks nothing by itself
#   tokenless-per-ip  POSTs so labelled and POSTs to an /auth* path: waf_auth_rate_limit per
#                     source IP in 5 minutes
#   requests-per-ip   any request: waf_rate_limit per source IP in 5 minutes
#   known-bad-inputs  AWS's managed rule group of request patterns known to be malicious (Log4j's
#                     JNDI lookups, localhost Host headers, ...), which nothing legitimate sends
# A token that is present but false still gets through the tighter rule (WAF cannot check a
# signature); the worker refuses it, and requests-per-ip bounds it.
# Bring your own web ACL with waf_web_acl_arn: this one is then not created, and yours is
# associated instead.

locals {
  waf_own         = var.waf_web_acl_arn == null
  waf_web_acl_arn = coalesce(var.waf_web_acl_arn, one(aws_wafv2_web_acl.qbill[*].arn))
}

resource "aws_wafv2_web_acl" "qbill" {
  count = local.waf_own ? 1 : 0

  # A description takes letters, digits, spaces and + = : # @ / - , . only (no parentheses).
  name        = var.name
  description = "qbill API: per-IP rate limits, tighter on POSTs without a token and on POSTs to /auth, and known bad inputs"
  scope       = "REGIONAL"

  default_action {
    allow {}
  }

  # The label the rate rule below counts. A match statement on a header the request lacks does
  # not match, so the not_statement takes a POST without an Authorization header too.
  rule {
    name     = "tokenless-post"
    priority = 5

    action {
      count {}
    }

    rule_label {
      name = "qbill:tokenless-post"
    }

    statement {
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

        statement {
          not_statement {
            statement {
              byte_match_statement {
                search_string         = "bearer "
                positional_constraint = "STARTS_WITH"

                field_to_match {
                  single_header {
                    name = "authorization"
                  }
                }

                # The scheme is case-insensitive (RFC 9110): "Bearer" and "bearer" alike.
                text_transformation {
                  priority = 0
                  type     = "LOWERCASE"
                }
              }
            }
          }
        }

        # The payments processor's webhooks carry no token but a signature, checked by the
        # worker; they make no reply queue and check no password, and the processor sends them
        # from a few addresses, which the tighter rule would block at volume. requests-per-ip
        # still bounds them.
        statement {
          not_statement {
            statement {
              byte_match_statement {
                search_string         = "/webhooks/stripe"
                positional_constraint = "ENDS_WITH"

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
      metric_name                = "${var.name}-tokenless-post"
      sampled_requests_enabled   = true
    }
  }

  rule {
    name     = "tokenless-per-ip"
    priority = 10

    action {
      block {}
    }

    statement {
      rate_based_statement {
        limit              = var.waf_auth_rate_limit
        aggregate_key_type = "IP"

        # A label is matched by its name and the namespaces before it: the rule above, which runs
        # first (a lower priority), adds awswaf:<account>:webacl:<name>:qbill:tokenless-post.
        scope_down_statement {
          or_statement {
            statement {
              label_match_statement {
                scope = "LABEL"
                key   = "qbill:tokenless-post"
              }
            }

            # A POST to /auth* counts even with an Authorization header. The path as WAF sees it
            # starts with the stage (/v1/auth...), or a custom domain's base path; no other route
            # has an /auth segment.
            statement {
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
      }
    }

    visibility_config {
      cloudwatch_metrics_enabled = true
      metric_name                = "${var.name}-tokenless-per-ip"
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
