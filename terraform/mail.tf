# Mail through Amazon SES (the v1 API, SendEmail / SendRawEmail): the worker's notification
# sender ({"qbill": "notify"}, every minute) drains the outbox and mails as one verified identity.
#   mail_domain = null: the address mail_from_address is the identity; SES mails it a link to
#                       click once.
#   mail_domain set:    the domain is the identity, signed with Easy DKIM; publish the records of
#                       the mail_dns_records output in the domain's DNS.
# The worker's role may send as that identity only (iam.tf), and reaches SES through the "email"
# interface endpoint (network.tf). A new account is in the SES sandbox: README.md, "Mail (SES)".

resource "aws_ses_email_identity" "sender" {
  provider = aws.ses
  count    = var.mail_domain == null ? 1 : 0

  email = var.mail_from_address
}

resource "aws_ses_domain_identity" "sender" {
  provider = aws.ses
  count    = var.mail_domain == null ? 0 : 1

  domain = var.mail_domain

  lifecycle {
    precondition {
      condition     = endswith(lower(var.mail_from_address), "@${var.mail_domain}")
      error_message = "mail_from_address must be an address of mail_domain."
    }
  }
}

resource "aws_ses_domain_dkim" "sender" {
  provider = aws.ses
  count    = var.mail_domain == null ? 0 : 1

  domain = aws_ses_domain_identity.sender[0].domain
}

# In the sandbox SES delivers only to verified recipients, and it checks the sender's permission
# against each recipient's identity too; these are verified for testing and granted in iam.tf.
resource "aws_ses_email_identity" "sandbox_recipient" {
  provider = aws.ses
  for_each = toset(var.mail_sandbox_recipients)

  email = each.key
}

# The worker has no route out of the VPC; the SES endpoint it mails through is regional.
check "mail_reaches_ses" {
  assert {
    condition     = local.ses_region == local.region
    error_message = "ses_region (${local.ses_region}) is not aws_region (${local.region}): the VPC's SES endpoint serves ${local.region} only and the private subnets have no route out, so the worker cannot mail until you give it one (README.md, \"Mail (SES)\")."
  }
}
