# The prod stack; names must match infrastructure/k8s/overlays/prod (tests/test_infra_terraform.py).
# Replace the account, cluster and bucket placeholders.
aws_region             = "us-east-1"
name_prefix            = "fraud-prod"
stream_name            = "fraud-transactions-prod"
stream_mode            = "PROVISIONED"
shard_count            = 4
stream_retention_hours = 168
alerts_table_name      = "fraud-alerts-prod"
bucket_name            = "example-fraud-lake-prod"
deletion_protection    = true

oidc_provider_arn = "arn:aws:iam::111122223333:oidc-provider/oidc.eks.us-east-1.amazonaws.com/id/EXAMPLED539D4633E53DE1B71EXAMPLE"
oidc_provider_url = "https://oidc.eks.us-east-1.amazonaws.com/id/EXAMPLED539D4633E53DE1B71EXAMPLE"

tags = {
  environment = "prod"
}
