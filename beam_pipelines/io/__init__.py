"""The edges on the worker path: sources (files, live sources, Pub/Sub) and sinks (the
lakehouse, BigQuery through ``beam_pipelines.bigquery.sink``, the alerts topic)."""
