# AWS resources of the fraud pipeline: Kinesis stream, DynamoDB alerts table, S3 bucket for the
# lake, checkpoints and models, KMS keys, the Secrets Manager entry for the card tokenisation
# key, and the IRSA roles of the workloads on an existing EKS cluster.
#
#   terraform init -backend-config=backend.hcl
#   terraform apply -var-file=environments/dev.tfvars
#
# See docs/deploy.md.

terraform {
  required_version = ">= 1.6"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.70, < 7.0"
    }
  }

  # State in S3 with locking; bucket, key and region come from -backend-config at init.
  backend "s3" {}
}

provider "aws" {
  region = var.aws_region

  default_tags {
    tags = merge(var.tags, {
      "app.kubernetes.io/part-of" = "fraud-pipeline"
      "fraud-pipeline/stack"      = var.name_prefix
    })
  }
}

data "aws_caller_identity" "current" {}

data "aws_partition" "current" {}

locals {
  account_id = data.aws_caller_identity.current.account_id
  partition  = data.aws_partition.current.partition
  # The IRSA trust conditions name the issuer without its scheme.
  oidc_issuer = trimprefix(var.oidc_provider_url, "https://")
}
