# One bucket, three prefixes: lake/ (Delta tables), checkpoints/ (Structured Streaming state),
# models/ (model.joblib and its model card, models/current/ being the one in use).
resource "aws_s3_bucket" "lake" {
  #checkov:skip=CKV_AWS_144:Cross-region replication is a per-deployment disaster-recovery decision (cost, data residency); versioning covers deletes in-region
  #checkov:skip=CKV2_AWS_62:No consumer of object events; the processor reads the stream, not the bucket
  #checkov:skip=CKV_AWS_18:Access logging is enabled by aws_s3_bucket_logging when var.access_log_bucket names the organisation's log bucket
  bucket = var.bucket_name
}

resource "aws_s3_bucket_ownership_controls" "lake" {
  bucket = aws_s3_bucket.lake.id

  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_public_access_block" "lake" {
  bucket                  = aws_s3_bucket.lake.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_versioning" "lake" {
  bucket = aws_s3_bucket.lake.id

  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "lake" {
  bucket = aws_s3_bucket.lake.id

  rule {
    bucket_key_enabled = true

    apply_server_side_encryption_by_default {
      sse_algorithm     = "aws:kms"
      kms_master_key_id = aws_kms_key.data.arn
    }
  }
}

# Current objects under lake/ never expire here: Delta's VACUUM removes data files no table
# version needs, and an expiry rule would delete files that a version still references.
# Lifecycle only cleans up what versioning keeps behind, and abandoned multipart uploads.
resource "aws_s3_bucket_lifecycle_configuration" "lake" {
  bucket     = aws_s3_bucket.lake.id
  depends_on = [aws_s3_bucket_versioning.lake]

  rule {
    id     = "abort-incomplete-multipart-uploads"
    status = "Enabled"

    filter {}

    abort_incomplete_multipart_upload {
      days_after_initiation = 7
    }
  }

  rule {
    id     = "lake-noncurrent-versions"
    status = "Enabled"

    filter {
      prefix = "lake/"
    }

    noncurrent_version_expiration {
      noncurrent_days = var.lake_noncurrent_days
    }

    expiration {
      expired_object_delete_marker = true
    }
  }

  rule {
    id     = "checkpoints-noncurrent-versions"
    status = "Enabled"

    filter {
      prefix = "checkpoints/"
    }

    noncurrent_version_expiration {
      noncurrent_days = var.checkpoint_noncurrent_days
    }

    expiration {
      expired_object_delete_marker = true
    }
  }

  rule {
    id     = "models-noncurrent-versions"
    status = "Enabled"

    filter {
      prefix = "models/"
    }

    noncurrent_version_expiration {
      noncurrent_days = var.model_noncurrent_days
    }
  }
}

data "aws_iam_policy_document" "lake_bucket" {
  statement {
    sid       = "DenyInsecureTransport"
    effect    = "Deny"
    actions   = ["s3:*"]
    resources = [aws_s3_bucket.lake.arn, "${aws_s3_bucket.lake.arn}/*"]

    principals {
      type        = "*"
      identifiers = ["*"]
    }

    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
}

resource "aws_s3_bucket_policy" "lake" {
  bucket     = aws_s3_bucket.lake.id
  policy     = data.aws_iam_policy_document.lake_bucket.json
  depends_on = [aws_s3_bucket_public_access_block.lake]
}

resource "aws_s3_bucket_logging" "lake" {
  count         = var.access_log_bucket == null ? 0 : 1
  bucket        = aws_s3_bucket.lake.id
  target_bucket = var.access_log_bucket
  target_prefix = "s3/${var.bucket_name}/"
}
