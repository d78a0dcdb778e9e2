# The dev stack; names must match infrastructure/k8s/overlays/dev (tests/test_infra_terraform.py).
# Replace the account, cluster and bucket placeholders.
aws_region             = "us-east-1"
name_prefix            = "fraud-dev"
stream_name            = "fraud-transactions-dev"
stream_mode            = "PROVISIONED"
shard_count            = 2
stream_retention_hours = 24
alerts_table_name      = "fraud-alerts-dev"
bucket_name            = "example-fraud-lake-dev"
deletion_protection    = false

oidc_provider_arn = "arn:aws:iam::111122223333:oidc-provider/oidc.eks.us-east-1.amazonaws.com/id/EXAMPLED539D4633E53DE1B71EXAMPLE"
oidc_provider_url = "https://oidc.eks.us-east-1.amazonaws.com/id/EXAMPLED539D4633E53DE1B71EXAMPLE"

tags = {
  environment = "dev"
}
