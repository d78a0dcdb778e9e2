# IRSA: one role for the producer, one for the processor (its Spark driver and executors), one
# for the alert console, one for the scheduled retraining and one for the lake's maintenance.
# Each policy lists the calls the code makes, on the ARNs of this stack only.

locals {
  producer_subjects  = ["system:serviceaccount:${var.k8s_namespace}:${var.producer_service_account}"]
  processor_subjects = [for account in var.processor_service_accounts : "system:serviceaccount:${var.k8s_namespace}:${account}"]
  retrain_subjects   = ["system:serviceaccount:${var.k8s_namespace}:${var.retrain_service_account}"]
  lake_maintenance_subjects = [
    "system:serviceaccount:${var.k8s_namespace}:${var.lake_maintenance_service_account}",
  ]
  # Prefixes the processor reads and writes, and the one it only reads.
  processor_rw_prefixes = ["lake", "checkpoints"]
  processor_ro_prefixes = ["models"]
  # s3a probes the prefix itself (HEAD "lake") as well as the keys under it.
  processor_rw_objects    = flatten([for p in local.processor_rw_prefixes : ["${aws_s3_bucket.lake.arn}/${p}", "${aws_s3_bucket.lake.arn}/${p}/*"]])
  processor_ro_objects    = flatten([for p in local.processor_ro_prefixes : ["${aws_s3_bucket.lake.arn}/${p}", "${aws_s3_bucket.lake.arn}/${p}/*"]])
  processor_list_prefixes = flatten([for p in concat(local.processor_rw_prefixes, local.processor_ro_prefixes) : [p, "${p}/*"]])
  # SageMaker endpoint ARNs use the lower-cased endpoint name.
  sagemaker_endpoint_arns = var.sagemaker_endpoint_name == null ? [] : ["arn:${local.partition}:sagemaker:${var.aws_region}:${local.account_id}:endpoint/${lower(var.sagemaker_endpoint_name)}"]
}

data "aws_iam_policy_document" "producer_trust" {
  statement {
    sid     = "ProducerServiceAccount"
    actions = ["sts:AssumeRoleWithWebIdentity"]

    principals {
      type        = "Federated"
      identifiers = [var.oidc_provider_arn]
    }

    condition {
      test     = "StringEquals"
      variable = "${local.oidc_issuer}:sub"
      values   = local.producer_subjects
    }

    condition {
      test     = "StringEquals"
      variable = "${local.oidc_issuer}:aud"
      values   = ["sts.amazonaws.com"]
    }
  }
}

data "aws_iam_policy_document" "processor_trust" {
  statement {
    sid     = "ProcessorServiceAccounts"
    actions = ["sts:AssumeRoleWithWebIdentity"]

    principals {
      type        = "Federated"
      identifiers = [var.oidc_provider_arn]
    }

    condition {
      test     = "StringEquals"
      variable = "${local.oidc_issuer}:sub"
      values   = local.processor_subjects
    }

    condition {
      test     = "StringEquals"
      variable = "${local.oidc_issuer}:aud"
      values   = ["sts.amazonaws.com"]
    }
  }
}

# producer/sinks.py checks the stream (DescribeStreamSummary); producer/kinesis_writer.py sends
# with PutRecords. Records are encrypted with the stream's key, which needs GenerateDataKey.
data "aws_iam_policy_document" "producer" {
  statement {
    sid       = "PutToTheStream"
    actions   = ["kinesis:DescribeStreamSummary", "kinesis:PutRecords"]
    resources = [aws_kinesis_stream.transactions.arn]
  }

  statement {
    sid       = "EncryptRecordsThroughKinesis"
    actions   = ["kms:GenerateDataKey"]
    resources = [aws_kms_key.stream.arn]

    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = ["kinesis.${var.aws_region}.amazonaws.com"]
    }
  }
}

data "aws_iam_policy_document" "processor" {
  # processor/kinesis_source: ListShards, GetShardIterator, GetRecords.
  statement {
    sid = "ReadTheStream"
    actions = [
      "kinesis:DescribeStreamSummary",
      "kinesis:GetRecords",
      "kinesis:GetShardIterator",
      "kinesis:ListShards",
    ]
    resources = [aws_kinesis_stream.transactions.arn]
  }

  statement {
    sid       = "DecryptRecordsThroughKinesis"
    actions   = ["kms:Decrypt"]
    resources = [aws_kms_key.stream.arn]

    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = ["kinesis.${var.aws_region}.amazonaws.com"]
    }
  }

  # Alerts are idempotent puts keyed by transaction_id; a replay first reads back the
  # analysts' verdicts so that it keeps them.
  statement {
    sid       = "WriteAlerts"
    actions   = ["dynamodb:BatchGetItem", "dynamodb:BatchWriteItem", "dynamodb:PutItem"]
    resources = [aws_dynamodb_table.alerts.arn]
  }

  statement {
    sid       = "ListOwnPrefixes"
    actions   = ["s3:ListBucket"]
    resources = [aws_s3_bucket.lake.arn]

    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = local.processor_list_prefixes
    }
  }

  # Delta tables and checkpoints through s3a (multipart uploads included), and the
  # late-event threshold file beside the checkpoint through boto3.
  statement {
    sid = "ReadWriteLakeAndCheckpoints"
    actions = [
      "s3:AbortMultipartUpload",
      "s3:DeleteObject",
      "s3:GetObject",
      "s3:ListMultipartUploadParts",
      "s3:PutObject",
    ]
    resources = local.processor_rw_objects
  }

  # The processor loads models; training writes them (docs/deploy.md).
  statement {
    sid       = "ReadModels"
    actions   = ["s3:GetObject"]
    resources = local.processor_ro_objects
  }

  # The bucket and the alerts table are encrypted with the data key.
  statement {
    sid       = "UseTheDataKeyThroughS3AndDynamoDb"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
    resources = [aws_kms_key.data.arn]

    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = ["s3.${var.aws_region}.amazonaws.com", "dynamodb.${var.aws_region}.amazonaws.com"]
    }
  }

  dynamic "statement" {
    for_each = length(local.sagemaker_endpoint_arns) == 0 ? [] : [1]

    content {
      sid       = "InvokeTheScoringEndpoint"
      actions   = ["sagemaker:InvokeEndpoint"]
      resources = local.sagemaker_endpoint_arns
    }
  }
}

resource "aws_iam_role" "producer" {
  name                 = "${var.name_prefix}-producer"
  description          = "IRSA role of the fraud producer (${var.k8s_namespace}/${var.producer_service_account})"
  assume_role_policy   = data.aws_iam_policy_document.producer_trust.json
  max_session_duration = 3600
}

resource "aws_iam_role_policy" "producer" {
  name   = "put-to-${var.stream_name}"
  role   = aws_iam_role.producer.id
  policy = data.aws_iam_policy_document.producer.json
}

resource "aws_iam_role" "processor" {
  name                 = "${var.name_prefix}-processor"
  description          = "IRSA role of the fraud processor's Spark driver and executors"
  assume_role_policy   = data.aws_iam_policy_document.processor_trust.json
  max_session_duration = 3600
}

resource "aws_iam_role_policy" "processor" {
  name   = "process-${var.stream_name}"
  role   = aws_iam_role.processor.id
  policy = data.aws_iam_policy_document.processor.json
}

# The analysts' alert console (processor/console): reads the alerts, records a verdict on one
# (a conditional UpdateItem), puts the verdict's label event on the stream, and reads the
# lake's transactions tables for a card's history. It never writes the lake.
data "aws_iam_policy_document" "console_trust" {
  statement {
    sid     = "ConsoleServiceAccount"
    actions = ["sts:AssumeRoleWithWebIdentity"]

    principals {
      type        = "Federated"
      identifiers = [var.oidc_provider_arn]
    }

    condition {
      test     = "StringEquals"
      variable = "${local.oidc_issuer}:sub"
      values   = ["system:serviceaccount:${var.k8s_namespace}:${var.console_service_account}"]
    }

    condition {
      test     = "StringEquals"
      variable = "${local.oidc_issuer}:aud"
      values   = ["sts.amazonaws.com"]
    }
  }
}

data "aws_iam_policy_document" "console" {
  statement {
    sid       = "ReadAlertsAndRecordVerdicts"
    actions   = ["dynamodb:GetItem", "dynamodb:Scan", "dynamodb:UpdateItem"]
    resources = [aws_dynamodb_table.alerts.arn]
  }

  statement {
    sid       = "PutVerdictLabels"
    actions   = ["kinesis:DescribeStreamSummary", "kinesis:PutRecord"]
    resources = [aws_kinesis_stream.transactions.arn]
  }

  statement {
    sid       = "EncryptRecordsThroughKinesis"
    actions   = ["kms:GenerateDataKey"]
    resources = [aws_kms_key.stream.arn]

    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = ["kinesis.${var.aws_region}.amazonaws.com"]
    }
  }

  statement {
    sid       = "ListTheLake"
    actions   = ["s3:ListBucket"]
    resources = [aws_s3_bucket.lake.arn]

    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = ["lake", "lake/*"]
    }
  }

  statement {
    sid       = "ReadTheLake"
    actions   = ["s3:GetObject"]
    resources = ["${aws_s3_bucket.lake.arn}/lake/*"]
  }

  statement {
    sid       = "UseTheDataKeyThroughS3AndDynamoDb"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
    resources = [aws_kms_key.data.arn]

    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = ["s3.${var.aws_region}.amazonaws.com", "dynamodb.${var.aws_region}.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "console" {
  name                 = "${var.name_prefix}-console"
  description          = "IRSA role of the analysts' alert console (${var.k8s_namespace}/${var.console_service_account})"
  assume_role_policy   = data.aws_iam_policy_document.console_trust.json
  max_session_duration = 3600
}

resource "aws_iam_role_policy" "console" {
  name   = "review-alerts"
  role   = aws_iam_role.console.id
  policy = data.aws_iam_policy_document.console.json
}

# The scheduled retraining (infrastructure/k8s/base/retrain-cronjob.yaml): ml_model.train reads
# the lake with delta-rs (list and get under lake/) and puts model.joblib and model_card.json
# under models/next/, the candidate. It may not write models/current/ (the served model) nor
# promotions.jsonl: promotion is `python -m ml_model.promote`, run and recorded by a person.
data "aws_iam_policy_document" "retrain_trust" {
  statement {
    sid     = "RetrainServiceAccount"
    actions = ["sts:AssumeRoleWithWebIdentity"]

    principals {
      type        = "Federated"
      identifiers = [var.oidc_provider_arn]
    }

    condition {
      test     = "StringEquals"
      variable = "${local.oidc_issuer}:sub"
      values   = local.retrain_subjects
    }

    condition {
      test     = "StringEquals"
      variable = "${local.oidc_issuer}:aud"
      values   = ["sts.amazonaws.com"]
    }
  }
}

data "aws_iam_policy_document" "retrain" {
  statement {
    sid       = "ListTheLake"
    actions   = ["s3:ListBucket"]
    resources = [aws_s3_bucket.lake.arn]

    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = ["lake", "lake/*"]
    }
  }

  statement {
    sid       = "ReadTheLake"
    actions   = ["s3:GetObject"]
    resources = ["${aws_s3_bucket.lake.arn}/lake/*"]
  }

  statement {
    sid       = "WriteTheCandidateModel"
    actions   = ["s3:PutObject"]
    resources = ["${aws_s3_bucket.lake.arn}/models/next/*"]
  }

  # The bucket is encrypted with the data key: Decrypt to read the lake, GenerateDataKey to write.
  statement {
    sid       = "UseTheDataKeyThroughS3"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
    resources = [aws_kms_key.data.arn]

    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = ["s3.${var.aws_region}.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "retrain" {
  name                 = "${var.name_prefix}-retrain"
  description          = "IRSA role of the scheduled retraining (${var.k8s_namespace}/${var.retrain_service_account})"
  assume_role_policy   = data.aws_iam_policy_document.retrain_trust.json
  max_session_duration = 3600
}

resource "aws_iam_role_policy" "retrain" {
  name   = "retrain-into-models-next"
  role   = aws_iam_role.retrain.id
  policy = data.aws_iam_policy_document.retrain.json
}

# The lake's daily maintenance (infrastructure/k8s/base/lake-maintenance-cronjob.yaml):
# processor.lake_maintenance opens each table with delta-rs (list and get under lake/), writes
# the compacted files and the OPTIMIZE commit (put, multipart for big files), and VACUUM deletes
# the files removed longer ago than the retention. Nothing outside lake/: not the checkpoints,
# not the models.
data "aws_iam_policy_document" "lake_maintenance_trust" {
  statement {
    sid     = "LakeMaintenanceServiceAccount"
    actions = ["sts:AssumeRoleWithWebIdentity"]

    principals {
      type        = "Federated"
      identifiers = [var.oidc_provider_arn]
    }

    condition {
      test     = "StringEquals"
      variable = "${local.oidc_issuer}:sub"
      values   = local.lake_maintenance_subjects
    }

    condition {
      test     = "StringEquals"
      variable = "${local.oidc_issuer}:aud"
      values   = ["sts.amazonaws.com"]
    }
  }
}

data "aws_iam_policy_document" "lake_maintenance" {
  statement {
    sid       = "ListTheLake"
    actions   = ["s3:ListBucket"]
    resources = [aws_s3_bucket.lake.arn]

    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = ["lake", "lake/*"]
    }
  }

  statement {
    sid = "RewriteTheLake"
    actions = [
      "s3:AbortMultipartUpload",
      "s3:DeleteObject",
      "s3:GetObject",
      "s3:ListMultipartUploadParts",
      "s3:PutObject",
    ]
    resources = ["${aws_s3_bucket.lake.arn}/lake/*"]
  }

  # The bucket is encrypted with the data key: Decrypt to read the lake, GenerateDataKey to write.
  statement {
    sid       = "UseTheDataKeyThroughS3"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
    resources = [aws_kms_key.data.arn]

    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = ["s3.${var.aws_region}.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "lake_maintenance" {
  name                 = "${var.name_prefix}-lake-maintenance"
  description          = "IRSA role of the lake's daily maintenance (${var.k8s_namespace}/${var.lake_maintenance_service_account})"
  assume_role_policy   = data.aws_iam_policy_document.lake_maintenance_trust.json
  max_session_duration = 3600
}

resource "aws_iam_role_policy" "lake_maintenance" {
  name   = "compact-and-vacuum-the-lake"
  role   = aws_iam_role.lake_maintenance.id
  policy = data.aws_iam_policy_document.lake_maintenance.json
}
