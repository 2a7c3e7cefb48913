# The household web app: static files (web/dist, built with esbuild) in a private bucket, served
# by a CloudFront distribution that reads the bucket through Origin Access Control. Nobody reads
# the bucket but that distribution. The app learns the gateway from /config.json, which this file
# writes; every other file is uploaded by the deploy (README.md, "Web app (CloudFront)").
#
# The app's URL (local.web_url) is what mails link to (QBILL_WEB_URL) and its origin is the one the
# API allows (CORS, the allowed_origin of main.tf's templatefile): the distribution's own
# https://<id>.cloudfront.net, or var.web_url (a custom domain with web_certificate_arn, or an app
# served elsewhere).
#
# Dependencies, read one way only: the API's definition needs the distribution's domain name
# (CORS), and the distribution's response headers policy names the API in the CSP's connect-src.
# That is no circle because the API is created without its definition (apigateway.tf): the
# policy needs only the API's id, and the definition (aws_api_gateway_rest_api_put), the
# deployment and the stage come after the distribution.

locals {
  web_bucket_name = "${var.name}-web-${local.account_id}-${local.region}"

  # A custom domain: the distribution answers on web_url's host with the operator's certificate.
  web_custom_domain = var.web_certificate_arn != null

  # The app's URL, without a trailing slash, and its origin (scheme, host and port).
  web_url    = var.web_url != null ? var.web_url : "https://${aws_cloudfront_distribution.web.domain_name}"
  web_origin = regex("^https?://[^/?#]+", local.web_url)

  # The gateway's origin as the CSP names it: this stack's REST API, by the host of its invoke
  # URL (the stage's URL without the stage), and no other API. The stack gives the API no custom
  # domain; one added later must be named here too.
  web_gateway_source = "https://${aws_api_gateway_rest_api.qbill.id}.execute-api.${local.region}.${data.aws_partition.current.dns_suffix}"

  # Content-Security-Policy of every response. The app is same-origin scripts and styles only
  # (no inline code, no eval), images may be data: URLs, and it talks to this stack's gateway and
  # nothing else. Documents are opened by following presigned S3 links: a navigation, which connect-src
  # does not govern. No plugins, no <base>, forms post to the app only, no framing. The one
  # exception is the card: Stripe.js, from js.stripe.com, draws the card field and the bank's
  # 3-D Secure page in frames of its own (js.stripe.com, hooks.stripe.com) and calls
  # api.stripe.com, so that card numbers never reach qbill (docs/payments.md).
  web_content_security_policy = join("; ", [
    "default-src 'none'",
    "script-src 'self' https://js.stripe.com",
    "style-src 'self'",
    "img-src 'self' data:",
    "font-src 'self'",
    "connect-src 'self' ${local.web_gateway_source} https://api.stripe.com",
    "frame-src https://js.stripe.com https://hooks.stripe.com",
    "manifest-src 'self'",
    "base-uri 'none'",
    "form-action 'self'",
    "frame-ancestors 'none'",
  ])
}

# ---------------------------------------------------------------------------------------------
# The bucket
# ---------------------------------------------------------------------------------------------

resource "aws_s3_bucket" "web" {
  #checkov:skip=CKV_AWS_18:The bucket holds the app's public build output and is read by the distribution only; server access logs would need a second bucket (whose own logging check would be skipped in turn). What viewers fetch is CloudFront's to log (see the distribution).
  #checkov:skip=CKV_AWS_144:The files are the build output of web/ and config.json is written by Terraform: a lost region is recovered by deploying again, not from a replica.
  #checkov:skip=CKV2_AWS_62:Nothing reacts to an upload: the deploy invalidates CloudFront's cache itself.
  #checkov:skip=CKV_AWS_145:Encrypted with SSE-S3 rather than the stack's KMS key: the files are the app everybody downloads, and CloudFront could read SSE-KMS objects only with a grant on the data key, which every other resource of the stack shares.
  bucket = local.web_bucket_name

  # Everything in it can be built again from the repository: a destroy empties it.
  force_destroy = true

  lifecycle {
    precondition {
      condition     = length(local.web_bucket_name) <= 63
      error_message = "The web bucket's name (<name>-web-<account>-<region>) is longer than S3's 63 characters: choose a shorter name."
    }
  }
}

resource "aws_s3_bucket_public_access_block" "web" {
  bucket = aws_s3_bucket.web.id

  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

# ACLs disabled: the account owns every object, and only policies grant access.
resource "aws_s3_bucket_ownership_controls" "web" {
  bucket = aws_s3_bucket.web.id

  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "web" {
  bucket = aws_s3_bucket.web.id

  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm = "AES256"
    }
  }
}

# A deploy that goes wrong can be rolled back from the previous versions.
resource "aws_s3_bucket_versioning" "web" {
  bucket = aws_s3_bucket.web.id

  versioning_configuration {
    status = "Enabled"
  }
}

# Old builds are kept 30 days after a deploy replaced or deleted them.
resource "aws_s3_bucket_lifecycle_configuration" "web" {
  bucket = aws_s3_bucket.web.id

  rule {
    id     = "old-builds"
    status = "Enabled"

    filter {}

    abort_incomplete_multipart_upload {
      days_after_initiation = 1
    }

    noncurrent_version_expiration {
      noncurrent_days = 30
    }

    expiration {
      expired_object_delete_marker = true
    }
  }

  depends_on = [aws_s3_bucket_versioning.web]
}

# Only the distribution reads, and only over TLS. CloudFront signs its requests (OAC, SigV4) as
# the cloudfront.amazonaws.com service, and AWS:SourceArn ties them to this distribution. No
# s3:ListBucket: a missing file is a 403, which the distribution turns into the app (SPA routes).
data "aws_iam_policy_document" "web_bucket" {
  statement {
    sid       = "AllowCloudFrontRead"
    actions   = ["s3:GetObject"]
    resources = ["${aws_s3_bucket.web.arn}/*"]

    principals {
      type        = "Service"
      identifiers = ["cloudfront.amazonaws.com"]
    }

    condition {
      test     = "StringEquals"
      variable = "AWS:SourceArn"
      values   = [aws_cloudfront_distribution.web.arn]
    }
  }

  statement {
    sid     = "DenyInsecureTransport"
    effect  = "Deny"
    actions = ["s3:*"]
    resources = [
      aws_s3_bucket.web.arn,
      "${aws_s3_bucket.web.arn}/*",
    ]

    principals {
      type        = "*"
      identifiers = ["*"]
    }

    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
}

resource "aws_s3_bucket_policy" "web" {
  bucket = aws_s3_bucket.web.id
  policy = data.aws_iam_policy_document.web_bucket.json

  # A grant to a service principal bound to one distribution is not public: S3 accepts it with
  # block_public_policy on.
  depends_on = [aws_s3_bucket_public_access_block.web]
}

# The app's runtime configuration: the gateway's invoke URL (no trailing slash). Terraform owns
# this object; the deploy's sync leaves it alone (--exclude config.json). no-cache: browsers and
# the distribution (its config.json behaviour caches nothing) ask again every time.
resource "aws_s3_object" "web_config" {
  bucket = aws_s3_bucket.web.id
  key    = "config.json"
  content = jsonencode({
    gateway_url            = aws_api_gateway_stage.qbill.invoke_url
    stripe_publishable_key = var.stripe_publishable_key
    stripe_js_url          = "https://js.stripe.com/v3/"
  })
  content_type  = "application/json"
  cache_control = "no-cache"

  depends_on = [
    aws_s3_bucket_server_side_encryption_configuration.web,
    aws_s3_bucket_ownership_controls.web,
  ]
}

# ---------------------------------------------------------------------------------------------
# The distribution
# ---------------------------------------------------------------------------------------------

resource "aws_cloudfront_origin_access_control" "web" {
  name                              = "${var.name}-web"
  description                       = "qbill web app: CloudFront signs its reads of ${local.web_bucket_name}"
  origin_access_control_origin_type = "s3"
  signing_behavior                  = "always"
  signing_protocol                  = "sigv4"
}

# AWS's managed cache policies: CachingOptimized (honours the files' Cache-Control, a day when
# they name none, gzip and Brotli) for the app's files, CachingDisabled for the two files that
# must be fresh after every deploy and every apply.
data "aws_cloudfront_cache_policy" "caching_optimized" {
  name = "Managed-CachingOptimized"
}

data "aws_cloudfront_cache_policy" "caching_disabled" {
  name = "Managed-CachingDisabled"
}

# Security headers on every response of the distribution (README.md, "Web app (CloudFront)").
resource "aws_cloudfront_response_headers_policy" "web" {
  #checkov:skip=CKV_AWS_259:HSTS is sent for two years with includeSubDomains; the check also wants the preload directive, a request to be put on the browsers' built-in list, which only takes a registered domain's apex with all its subdomains (never cloudfront.net or one host of a domain). Preloading the operator's domain is the domain owner's decision, made where the apex is served.
  name    = "${var.name}-web"
  comment = "qbill web app: CSP, HSTS, nosniff, no framing, referrer policy"

  security_headers_config {
    content_security_policy {
      content_security_policy = local.web_content_security_policy
      override                = true
    }

    # Two years, subdomains included: browsers never try the app over plain HTTP again.
    strict_transport_security {
      access_control_max_age_sec = 63072000
      include_subdomains         = true
      override                   = true
    }

    content_type_options {
      override = true
    }

    frame_options {
      frame_option = "DENY"
      override     = true
    }

    referrer_policy {
      referrer_policy = "strict-origin-when-cross-origin"
      override        = true
    }
  }

  custom_headers_config {
    # The app needs no camera, microphone, location or payment API.
    items {
      header   = "Permissions-Policy"
      value    = "camera=(), microphone=(), geolocation=(), payment=()"
      override = true
    }

    # A window the app opens (a document's link) cannot reach back into it.
    items {
      header   = "Cross-Origin-Opener-Policy"
      value    = "same-origin"
      override = true
    }
  }
}

resource "aws_cloudfront_distribution" "web" {
  #checkov:skip=CKV_AWS_86:Standard logging writes to an S3 bucket with ACLs enabled, which this stack has none of (its buckets enforce bucket-owner ownership). The files are public and static; the API's access logs record what households do.
  #checkov:skip=CKV_AWS_68:The distribution serves static files only and reads nothing but GETs; a WAF web ACL for CloudFront lives in us-east-1 and is billed per ACL and rule. The API, where requests do something, has the stack's web ACL (waf.tf).
  #checkov:skip=CKV2_AWS_47:No WAF on the static files (see CKV_AWS_68); the API's web ACL runs AWSManagedRulesKnownBadInputsRuleSet, which holds the Log4j rules.
  #checkov:skip=CKV_AWS_310:One origin, the bucket, in the stack's region; a failover origin would be a replica in another region, which the rest of the stack (database included) does not have either.
  #checkov:skip=CKV_AWS_374:Households are wherever they are; the price class chooses the edge locations, not who may fetch the app.
  #checkov:skip=CKV2_AWS_42:Without web_certificate_arn the distribution answers on its own cloudfront.net name with CloudFront's certificate; with it, the operator's ACM certificate is used (viewer_certificate).
  comment             = "qbill web app (${local.web_bucket_name})"
  enabled             = true
  is_ipv6_enabled     = true
  http_version        = "http2and3"
  price_class         = var.web_price_class
  default_root_object = "index.html"

  # With a custom domain, web_url's host (the precondition below checks it is a bare host).
  aliases = local.web_custom_domain ? [try(regex("^https://([a-z0-9.-]+)$", var.web_url)[0], var.web_url)] : []

  origin {
    origin_id                = "web"
    domain_name              = aws_s3_bucket.web.bucket_regional_domain_name
    origin_access_control_id = aws_cloudfront_origin_access_control.web.id
  }

  default_cache_behavior {
    target_origin_id           = "web"
    viewer_protocol_policy     = "redirect-to-https"
    allowed_methods            = ["GET", "HEAD"]
    cached_methods             = ["GET", "HEAD"]
    compress                   = true
    cache_policy_id            = data.aws_cloudfront_cache_policy.caching_optimized.id
    response_headers_policy_id = aws_cloudfront_response_headers_policy.web.id
  }

  # The app's entry point and its configuration are never cached by CloudFront: a deploy (new
  # script names in index.html) and an apply (a new gateway URL) show at once. "/" and the SPA
  # routes below are served from /index.html through the default behaviour; the deploy's
  # invalidation clears those.
  ordered_cache_behavior {
    path_pattern               = "/index.html"
    target_origin_id           = "web"
    viewer_protocol_policy     = "redirect-to-https"
    allowed_methods            = ["GET", "HEAD"]
    cached_methods             = ["GET", "HEAD"]
    compress                   = true
    cache_policy_id            = data.aws_cloudfront_cache_policy.caching_disabled.id
    response_headers_policy_id = aws_cloudfront_response_headers_policy.web.id
  }

  ordered_cache_behavior {
    path_pattern               = "/config.json"
    target_origin_id           = "web"
    viewer_protocol_policy     = "redirect-to-https"
    allowed_methods            = ["GET", "HEAD"]
    cached_methods             = ["GET", "HEAD"]
    compress                   = true
    cache_policy_id            = data.aws_cloudfront_cache_policy.caching_disabled.id
    response_headers_policy_id = aws_cloudfront_response_headers_policy.web.id
  }

  # A single-page app: a path that is no file (/verify-email?token=..., /reset-password?token=...,
  # any route of the app) is answered with index.html and 200, and the app routes it. S3 answers
  # 403 for a missing key (CloudFront may not list the bucket), 404 if it ever may. Such an answer
  # is cached 10 seconds.
  custom_error_response {
    error_code            = 403
    response_code         = 200
    response_page_path    = "/index.html"
    error_caching_min_ttl = 10
  }

  custom_error_response {
    error_code            = 404
    response_code         = 200
    response_page_path    = "/index.html"
    error_caching_min_ttl = 10
  }

  restrictions {
    geo_restriction {
      restriction_type = "none"
    }
  }

  viewer_certificate {
    cloudfront_default_certificate = !local.web_custom_domain
    acm_certificate_arn            = var.web_certificate_arn
    ssl_support_method             = local.web_custom_domain ? "sni-only" : null
    minimum_protocol_version       = local.web_custom_domain ? "TLSv1.2_2021" : "TLSv1"
  }

  lifecycle {
    precondition {
      condition     = !local.web_custom_domain || can(regex("^https://[a-z0-9.-]+$", var.web_url))
      error_message = "With web_certificate_arn, web_url must be set to https://<the certificate's host>, without a path: the distribution serves the app at the root of that host."
    }
  }
}
