# Provider and Terraform requirements. There is deliberately no backend block: state is local
# until the operator adds one (see README.md, "Remote state").

# required_version: the module needs 1.5 (check blocks); its terraform test files need 1.7
# (mock_provider, override_resource) and 1.11 (override_during = plan). The providers are pinned
# by the committed .terraform.lock.hcl (README.md, "Prerequisites").
terraform {
  required_version = ">= 1.11"

  required_providers {
    aws = {
      source = "hashicorp/aws"
      # 5.27 added auth_token_update_strategy on ElastiCache (elasticache.tf), and a later 5.x
      # aws_api_gateway_rest_api_put (apigateway.tf); 5.100, the last 5.x, has both and is the
      # version the lock file pins.
      version = ">= 5.100, < 6.0"
    }
    random = {
      source  = "hashicorp/random"
      version = ">= 3.5, < 4.0"
    }
  }
}

provider "aws" {
  region = var.aws_region

  default_tags {
    tags = merge(
      {
        "qbill:stack" = var.name
        "managed-by"  = "terraform"
      },
      var.tags,
    )
  }
}

# SES in ses_region (aws_region unless set): the sender's identity must live where the worker
# mails. The tags are the default provider's.
provider "aws" {
  alias  = "ses"
  region = coalesce(var.ses_region, var.aws_region)

  default_tags {
    tags = merge(
      {
        "qbill:stack" = var.name
        "managed-by"  = "terraform"
      },
      var.tags,
    )
  }
}

data "aws_caller_identity" "current" {}

data "aws_partition" "current" {}

# The candidate zones are named explicitly (an allowlist), so the set cannot grow by itself when
# AWS adds a zone: either var.availability_zones, or <region>a ... <region>f.
data "aws_availability_zones" "available" {
  state = "available"

  filter {
    name   = "zone-name"
    values = length(var.availability_zones) > 0 ? var.availability_zones : [for suffix in ["a", "b", "c", "d", "e", "f"] : "${var.aws_region}${suffix}"]
  }

  # Only regular AZs: Local Zones and Wavelength Zones lack RDS/ElastiCache/endpoint support.
  filter {
    name   = "opt-in-status"
    values = ["opt-in-not-required"]
  }
}
