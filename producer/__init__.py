"""Synthetic and replayed card transactions, sent to Kinesis."""
