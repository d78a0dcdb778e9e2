output "stream_name" {
  value = aws_kinesis_stream.transactions.name
}

output "stream_arn" {
  value = aws_kinesis_stream.transactions.arn
}

output "alerts_table_name" {
  value = aws_dynamodb_table.alerts.name
}

output "bucket_name" {
  value = aws_s3_bucket.lake.bucket
}

output "producer_role_arn" {
  description = "eks.amazonaws.com/role-arn of the fraud-producer service account."
  value       = aws_iam_role.producer.arn
}

output "console_role_arn" {
  description = "eks.amazonaws.com/role-arn of the fraud-console service account."
  value       = aws_iam_role.console.arn
}

output "processor_role_arn" {
  description = "eks.amazonaws.com/role-arn of the fraud-processor and fraud-processor-executor service accounts."
  value       = aws_iam_role.processor.arn
}

output "retrain_role_arn" {
  description = "eks.amazonaws.com/role-arn of the fraud-retrain service account."
  value       = aws_iam_role.retrain.arn
}

output "lake_maintenance_role_arn" {
  description = "eks.amazonaws.com/role-arn of the fraud-lake-maintenance service account."
  value       = aws_iam_role.lake_maintenance.arn
}

output "card_token_secret_arn" {
  description = "Secrets Manager secret that holds CARD_TOKEN_KEY (value set out of band)."
  value       = aws_secretsmanager_secret.card_token_key.arn
}

output "stream_kms_key_arn" {
  value = aws_kms_key.stream.arn
}

output "data_kms_key_arn" {
  value = aws_kms_key.data.arn
}

# What the Kubernetes overlay needs (infrastructure/k8s/overlays/<env>).
output "k8s_overlay" {
  value = {
    FRAUD_REGION              = var.aws_region
    FRAUD_STREAM_NAME         = aws_kinesis_stream.transactions.name
    FRAUD_ALERTS_TABLE        = aws_dynamodb_table.alerts.name
    FRAUD_BUCKET              = aws_s3_bucket.lake.bucket
    producer_role_arn         = aws_iam_role.producer.arn
    processor_role_arn        = aws_iam_role.processor.arn
    retrain_role_arn          = aws_iam_role.retrain.arn
    lake_maintenance_role_arn = aws_iam_role.lake_maintenance.arn
  }
}
