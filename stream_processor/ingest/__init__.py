"""Ingest: the write side. A batch of Kinesis records goes through the pipeline (pure core,
then history and quarantine to S3, then version-guarded state to DynamoDB); the shard
consumer and the Lambda handler feed it; setup and reconcile keep its tables honest."""
