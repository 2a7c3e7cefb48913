# `terraform test` (after `terraform init`): plans the whole stack with a mocked AWS provider, so it
# needs no AWS account and no credentials, with the built-in identity and with Cognito. It checks
# what only a real plan shows: both settings plan, the /auth* routes leave the rendered API with
# Cognito, the pool mails through Cognito's sender until switched to SES, Cognito is refused with
# the stack's own web app, the interface endpoints follow the identity and the SES region, and
# the mail settings' guards fire. tests/infra (cargo test) checks the same files without Terraform.

mock_provider "aws" {
  mock_data "aws_availability_zones" {
    defaults = { names = ["eu-central-1a", "eu-central-1b", "eu-central-1c"] }
  }
  mock_data "aws_caller_identity" {
    defaults = { account_id = "123456789012" }
  }
  mock_data "aws_partition" {
    defaults = { partition = "aws" }
  }
  mock_data "aws_iam_policy_document" {
    defaults = { json = "{}" }
  }
}

mock_provider "aws" {
  alias = "ses"
}

# The gateway role's ARN is rendered into the API document; known here, so the plan shows the paths.
override_resource {
  target          = aws_iam_role.gateway
  override_during = plan
  values = {
    arn = "arn:aws:iam::123456789012:role/qbill-gateway"
  }
}

variables {
  web_url           = "https://billing.example.com"
  mail_from_address = "billing@example.com"
  # Any existing file: the plan only hashes it, and the mocked provider uploads nothing.
  lambda_package         = "README.md"
  stripe_secret_key      = "sk_test_plan"
  stripe_webhook_secret  = "whsec_plan"
  stripe_publishable_key = "pk_test_plan"
}

run "builtin_identity_keeps_the_auth_routes_and_mails_as_the_address" {
  command = plan

  assert {
    condition     = length(aws_cognito_user_pool.qbill) == 0 && length(aws_cognito_user_pool_client.web) == 0
    error_message = "The built-in identity creates no Cognito pool or client."
  }
  assert {
    condition     = contains(keys(jsondecode(aws_api_gateway_rest_api_put.qbill.body).paths), "/auth")
    error_message = "The built-in identity deploys POST /auth."
  }
  assert {
    condition     = length(aws_ses_email_identity.sender) == 1 && length(aws_ses_domain_identity.sender) == 0
    error_message = "Without mail_domain the sender's address is the SES identity."
  }
  assert {
    condition     = toset(keys(aws_vpc_endpoint.interface)) == toset(["sqs", "secretsmanager", "email"])
    error_message = "The worker reaches SQS, Secrets Manager and the SES API through endpoints, and nothing of Cognito."
  }
  assert {
    condition = (
      aws_lambda_function.worker.environment[0].variables["QBILL_MAIL_FROM"] == "qbill <billing@example.com>"
      && aws_lambda_function.worker.environment[0].variables["QBILL_WEB_URL"] == "https://billing.example.com"
      && aws_lambda_function.worker.environment[0].variables["QBILL_SES_REGION"] == "eu-central-1"
      && aws_lambda_function.worker.environment[0].variables["QBILL_IDENTITY"] == "builtin"
      && !contains(keys(aws_lambda_function.worker.environment[0].variables), "QBILL_COGNITO_ISSUER")
    )
    error_message = "The worker's mail and identity settings."
  }
  assert {
    condition = (
      aws_cloudwatch_event_target.notify.input == jsonencode({ qbill = "notify" })
      && aws_cloudwatch_event_rule.notify.schedule_expression == "rate(1 minute)"
      && aws_cloudwatch_event_target.due_soon.input == jsonencode({ qbill = "due-soon" })
    )
    error_message = "The notify and due-soon schedules invoke the worker with their events."
  }
}

run "cognito_identity_drops_the_auth_routes_and_a_domain_signs_the_mail" {
  command = plan

  variables {
    identity                = "cognito"
    mail_domain             = "example.com"
    mail_sandbox_recipients = ["tester@example.org"]
  }

  assert {
    condition     = length(aws_cognito_user_pool.qbill) == 1 && length(aws_cognito_user_pool_client.web) == 1
    error_message = "Cognito creates the pool and its client."
  }
  assert {
    condition     = length([for path in keys(jsondecode(aws_api_gateway_rest_api_put.qbill.body).paths) : path if startswith(path, "/auth")]) == 0
    error_message = "With Cognito no /auth* route is deployed."
  }
  assert {
    condition     = contains(keys(jsondecode(aws_api_gateway_rest_api_put.qbill.body).paths), "/replies/{queue_name}")
    error_message = "With Cognito the other routes stay, among them the replies."
  }
  assert {
    condition     = toset(keys(aws_vpc_endpoint.interface)) == toset(["sqs", "secretsmanager", "email", "cognito-idp"])
    error_message = "With Cognito the worker reaches the pool's JWKS through the cognito-idp endpoint."
  }
  assert {
    condition = (
      aws_lambda_function.worker.environment[0].variables["QBILL_IDENTITY"] == "cognito"
      && contains(keys(aws_lambda_function.worker.environment[0].variables), "QBILL_COGNITO_ISSUER")
      && contains(keys(aws_lambda_function.worker.environment[0].variables), "QBILL_COGNITO_CLIENT_ID")
    )
    error_message = "With Cognito the worker learns the issuer and the client id."
  }
  assert {
    condition = (
      length(aws_ses_domain_identity.sender) == 1 && length(aws_ses_email_identity.sender) == 0
      && length(aws_ses_email_identity.sandbox_recipient) == 1 && output.mail_identity == "example.com"
    )
    error_message = "With mail_domain the domain is the identity; sandbox recipients are verified."
  }
  assert {
    condition = (
      aws_cognito_user_pool.qbill[0].email_configuration[0].email_sending_account == "COGNITO_DEFAULT"
      && aws_cognito_user_pool.qbill[0].email_configuration[0].source_arn == null
    )
    error_message = "The first apply's pool mails through Cognito's own sender: the SES identity it creates is not verified yet."
  }

  expect_failures = [check.cognito_mail_through_ses]
}

run "cognito_mails_through_ses_once_switched_over" {
  command = plan

  variables {
    identity                 = "cognito"
    cognito_mail_through_ses = true
  }

  assert {
    condition = (
      aws_cognito_user_pool.qbill[0].email_configuration[0].email_sending_account == "DEVELOPER"
      && aws_cognito_user_pool.qbill[0].email_configuration[0].from_email_address == "qbill <billing@example.com>"
    )
    error_message = "With cognito_mail_through_ses the pool mails as the stack's SES identity."
  }
}

run "cognito_with_the_stacks_own_web_app_is_refused" {
  command = plan

  variables {
    identity = "cognito"
    web_url  = null
  }

  expect_failures = [aws_cognito_user_pool.qbill]
}

run "a_sender_outside_the_mail_domain_is_refused" {
  command = plan

  variables {
    mail_domain = "other.example"
  }

  expect_failures = [aws_ses_domain_identity.sender]
}

run "an_ses_region_the_vpc_cannot_reach_is_warned_about" {
  command = plan

  variables {
    ses_region = "us-east-1"
  }

  expect_failures = [check.mail_reaches_ses]

  assert {
    condition     = toset(keys(aws_vpc_endpoint.interface)) == toset(["sqs", "secretsmanager"])
    error_message = "No SES endpoint for another region."
  }
}
