variable "aws_region" {
  description = "Region of every resource (config/config.yaml aws.region, FRAUD_REGION)."
  type        = string
  default     = "us-east-1"
}

variable "name_prefix" {
  description = "Prefix of the IAM roles, KMS aliases and the secret, e.g. fraud-dev."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,30}$", var.name_prefix))
    error_message = "name_prefix: lower-case letters, digits and dashes, 2-31 characters."
  }
}

variable "stream_name" {
  description = "Kinesis stream (kinesis.stream_name, FRAUD_STREAM_NAME)."
  type        = string
  default     = "fraud-transactions"
}

variable "stream_mode" {
  description = "PROVISIONED (shard_count shards) or ON_DEMAND."
  type        = string
  default     = "PROVISIONED"

  validation {
    condition     = contains(["PROVISIONED", "ON_DEMAND"], var.stream_mode)
    error_message = "stream_mode must be PROVISIONED or ON_DEMAND."
  }
}

variable "shard_count" {
  description = "Shards of a PROVISIONED stream (kinesis.shard_count); ignored when ON_DEMAND."
  type        = number
  default     = 4
}

variable "stream_retention_hours" {
  description = "How long Kinesis keeps records: the longest processor outage that loses nothing."
  type        = number
  default     = 24

  validation {
    condition     = var.stream_retention_hours >= 24 && var.stream_retention_hours <= 8760
    error_message = "stream_retention_hours must be between 24 and 8760."
  }
}

variable "alerts_table_name" {
  description = "DynamoDB alerts table (dynamodb.alerts_table, FRAUD_ALERTS_TABLE)."
  type        = string
  default     = "fraud-alerts"
}

variable "bucket_name" {
  description = "S3 bucket for lake/, checkpoints/ and models/ (s3.bucket, FRAUD_BUCKET); globally unique."
  type        = string
}

variable "lake_noncurrent_days" {
  description = "Days an overwritten or deleted object under lake/ stays recoverable."
  type        = number
  default     = 30
}

variable "checkpoint_noncurrent_days" {
  description = "Days an overwritten or deleted checkpoint file stays recoverable."
  type        = number
  default     = 7
}

variable "model_noncurrent_days" {
  description = "Days a replaced model under models/ is kept (audit of past scores)."
  type        = number
  default     = 365
}

variable "access_log_bucket" {
  description = "Existing bucket that receives S3 server access logs of the lake bucket; null for none."
  type        = string
  default     = null
}

variable "oidc_provider_arn" {
  description = "ARN of the EKS cluster's IAM OIDC provider (IRSA)."
  type        = string
}

variable "oidc_provider_url" {
  description = "Issuer URL of the EKS cluster's OIDC provider, with or without https://."
  type        = string
}

variable "k8s_namespace" {
  description = "Namespace of the workloads (infrastructure/k8s)."
  type        = string
  default     = "fraud"
}

variable "producer_service_account" {
  description = "Service account of the producer Deployment."
  type        = string
  default     = "fraud-producer"
}

variable "processor_service_accounts" {
  description = "Service accounts of the Spark driver and of its executors; both assume the processor role."
  type        = list(string)
  default     = ["fraud-processor", "fraud-processor-executor"]
}

variable "console_service_account" {
  description = "Service account of the alert console (processor/console)."
  type        = string
  default     = "fraud-console"
}

variable "retrain_service_account" {
  description = "Service account of the scheduled retraining CronJob (ml_model.train into models/next)."
  type        = string
  default     = "fraud-retrain"
}

variable "lake_maintenance_service_account" {
  description = "Service account of the lake's daily maintenance CronJob (processor.lake_maintenance)."
  type        = string
  default     = "fraud-lake-maintenance"
}

variable "sagemaker_endpoint_name" {
  description = "SageMaker endpoint the processor may invoke (model.scorer = sagemaker); null for none."
  type        = string
  default     = null
}

variable "deletion_protection" {
  description = "Protect the alerts table from deletion."
  type        = bool
  default     = true
}

variable "kms_deletion_window_days" {
  description = "Waiting period before a scheduled KMS key deletion."
  type        = number
  default     = 30
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}
