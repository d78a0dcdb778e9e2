"""PySpark Structured Streaming job: Kinesis -> parse -> features -> score -> Delta + DynamoDB."""
