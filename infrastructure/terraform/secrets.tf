# The card tokenisation key (CARD_TOKEN_KEY). Terraform creates the empty secret only; its value
# is put out of band (docs/deploy.md) so it never appears in a plan or in the state, and is
# copied into the Kubernetes Secret `fraud-card-token`.
resource "aws_secretsmanager_secret" "card_token_key" {
  #checkov:skip=CKV2_AWS_57:Rotating the key changes every card token: re-keying is a planned migration, not an automatic rotation
  name                    = "${var.name_prefix}/card-token-key"
  description             = "HMAC key for card tokenisation (processor.tokenization_key_env)"
  kms_key_id              = aws_kms_key.data.arn
  recovery_window_in_days = 30
}
