# Two customer managed keys, so that a role can use one without the other: the producer may
# encrypt stream records but never read the lake.

# In a key policy "*" means the key itself. The account root principal administers the key and
# lets IAM policies grant its use (iam.tf grants only Decrypt / GenerateDataKey, per service).
data "aws_iam_policy_document" "kms_key" {
  #checkov:skip=CKV_AWS_109:Key policy: resource "*" is this key only; the account root delegates use to IAM policies
  #checkov:skip=CKV_AWS_111:Key policy: resource "*" is this key only; the account root delegates use to IAM policies
  #checkov:skip=CKV_AWS_356:Key policy: resource "*" is this key only; the account root delegates use to IAM policies
  statement {
    sid       = "AccountAdministersTheKeyAndDelegatesUseToIam"
    actions   = ["kms:*"]
    resources = ["*"]

    principals {
      type        = "AWS"
      identifiers = ["arn:${local.partition}:iam::${local.account_id}:root"]
    }
  }
}

resource "aws_kms_key" "stream" {
  description             = "${var.name_prefix}: records of Kinesis stream ${var.stream_name}"
  enable_key_rotation     = true
  deletion_window_in_days = var.kms_deletion_window_days
  policy                  = data.aws_iam_policy_document.kms_key.json
}

resource "aws_kms_alias" "stream" {
  name          = "alias/${var.name_prefix}-stream"
  target_key_id = aws_kms_key.stream.key_id
}

resource "aws_kms_key" "data" {
  description             = "${var.name_prefix}: lake bucket ${var.bucket_name}, alerts table ${var.alerts_table_name}, tokenisation key secret"
  enable_key_rotation     = true
  deletion_window_in_days = var.kms_deletion_window_days
  policy                  = data.aws_iam_policy_document.kms_key.json
}

resource "aws_kms_alias" "data" {
  name          = "alias/${var.name_prefix}-data"
  target_key_id = aws_kms_key.data.key_id
}
