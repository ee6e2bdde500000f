"""Adapters: one module per AWS service role. They own the clients and translate botocore
error codes into `stream_processor.errors` types and typed outcomes."""
