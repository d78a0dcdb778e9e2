# Alerts: one item per transaction_id, so a replayed micro-batch overwrites instead of
# duplicating. DynamoDB deletes an item some time after the epoch second in `expires_at`.
resource "aws_dynamodb_table" "alerts" {
  name                        = var.alerts_table_name
  billing_mode                = "PAY_PER_REQUEST"
  hash_key                    = "transaction_id"
  deletion_protection_enabled = var.deletion_protection

  attribute {
    name = "transaction_id"
    type = "S"
  }

  ttl {
    attribute_name = "expires_at"
    enabled        = true
  }

  point_in_time_recovery {
    enabled = true
  }

  server_side_encryption {
    enabled     = true
    kms_key_arn = aws_kms_key.data.arn
  }
}
