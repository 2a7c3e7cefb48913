# identity = "cognito": a Cognito user pool signs households in instead of the worker's own
# logins. The pool verifies addresses and resets passwords itself (its mails go out through the
# stack's SES identity), the web or mobile client signs in with SRP and refreshes its tokens, and
# the worker accepts the pool's ID tokens (QBILL_COGNITO_ISSUER, QBILL_COGNITO_CLIENT_ID): RS256
# against the pool's JWKS, which it fetches through the cognito-idp endpoint (network.tf).
# The engine's /auth* routes are then not deployed (main.tf). README.md, "Identity: built-in or
# Cognito", says what changes for clients, above all for the reply queue.
#
# The pool has no domain (no hosted sign-in pages): a user pool with a domain cannot be reached
# through a VPC endpoint, and the worker has no other way out.

locals {
  # The issuer of the pool's tokens, https://cognito-idp.<region>.amazonaws.com/<pool id>; null
  # with the built-in identity.
  cognito_issuer = local.cognito ? "https://${aws_cognito_user_pool.qbill[0].endpoint}" : null
}

resource "aws_cognito_user_pool" "qbill" {
  count = local.cognito ? 1 : 0

  name = var.name

  # The address is the username; a new address is used only once it is verified.
  username_attributes      = ["email"]
  auto_verified_attributes = ["email"]

  username_configuration {
    case_sensitive = false
  }

  user_attribute_update_settings {
    attributes_require_verification_before_update = ["email"]
  }

  # Households sign up on their own.
  admin_create_user_config {
    allow_admin_create_user_only = false
  }

  password_policy {
    minimum_length                   = 12
    require_lowercase                = true
    require_uppercase                = true
    require_numbers                  = true
    require_symbols                  = false
    temporary_password_validity_days = 7
  }

  account_recovery_setting {
    recovery_mechanism {
      name     = "verified_email"
      priority = 1
    }
  }

  # Verification and password-reset codes. Cognito refuses an SES identity that is not verified
  # yet, and this apply creates it unverified, so the pool starts on Cognito's own sender (at most
  # 50 mails a day, from no-reply@verificationemail.com). Once the identity is verified,
  # cognito_mail_through_ses = true moves the codes to the same sender as qbill's own mail
  # (README.md, "Identity: built-in or Cognito").
  email_configuration {
    email_sending_account = var.cognito_mail_through_ses ? "DEVELOPER" : "COGNITO_DEFAULT"
    source_arn            = var.cognito_mail_through_ses ? local.mail_identity_arn : null
    from_email_address    = var.cognito_mail_through_ses ? local.mail_from : null
  }

  # The pool holds every user: it is protected like the database.
  deletion_protection = var.deletion_protection ? "ACTIVE" : "INACTIVE"

  lifecycle {
    # The stack's web app (web/) signs in through the /auth* routes, which Cognito removes, and
    # its Content-Security-Policy lets it reach the gateway only, not the pool: with Cognito it
    # could not sign anyone in. Until it supports the pool's sign-in, Cognito needs web_url to
    # name a client of the operator's that does, served elsewhere (no web_certificate_arn, which
    # would put the stack's app at web_url).
    precondition {
      condition     = var.web_url != null && var.web_certificate_arn == null
      error_message = "identity = \"cognito\" needs web_url set to a web client that signs in with the user pool, served elsewhere (and no web_certificate_arn): the stack's own web app signs in through /auth*, which Cognito removes, and cannot reach the pool (README.md, \"Identity: built-in or Cognito\")."
    }
  }
}

# Says on every plan that the pool still mails through Cognito's own sender, until the switch.
check "cognito_mail_through_ses" {
  assert {
    condition     = !local.cognito || var.cognito_mail_through_ses
    error_message = "The user pool mails its codes through Cognito's own sender, which sends at most 50 a day. Once the SES identity ${var.mail_domain == null ? var.mail_from_address : var.mail_domain} is verified, set cognito_mail_through_ses = true and apply again (README.md, \"Identity: built-in or Cognito\")."
  }
}

# The public client of the web and mobile apps: no secret (an app cannot keep one), SRP sign-in
# and refresh tokens only.
resource "aws_cognito_user_pool_client" "web" {
  count = local.cognito ? 1 : 0

  name         = "${var.name}-web"
  user_pool_id = aws_cognito_user_pool.qbill[0].id

  generate_secret     = false
  explicit_auth_flows = ["ALLOW_USER_SRP_AUTH", "ALLOW_REFRESH_TOKEN_AUTH"]

  # A sign-in or a reset for an unknown address answers like one for a known address.
  prevent_user_existence_errors = "ENABLED"
  enable_token_revocation       = true

  id_token_validity      = 60
  access_token_validity  = 60
  refresh_token_validity = 30

  token_validity_units {
    id_token      = "minutes"
    access_token  = "minutes"
    refresh_token = "days"
  }
}
