terraform {
  required_version = ">= 1.10" # S3 backend use_lockfile (aws/scripts/bootstrap.sh)
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 5.0"
    }
  }

  # Partial configuration: bucket, key, region and the lock settings come from
  # `terraform init -backend-config=...` (aws/scripts/bootstrap.sh creates the state bucket
  # first). `terraform init -backend=false` (validate, tests) needs none of it.
  backend "s3" {}
}

provider "aws" {
  region = "us-east-1" # config/prod.yaml aws.region
  default_tags {
    tags = { managed-by = "terraform", repository = var.github_repository }
  }
}
