"""The BigQuery warehouse: where the medallion lives in the cloud.

``warehouse`` names datasets and tables (validated identifiers), ``sink`` writes a
pipeline's tables with Beam's BigQuery IO, ``admin`` creates datasets, tables and reporting
views from the schema declaration, ``scheduled`` turns ``sql/scheduled/`` into BigQuery
scheduled queries, ``looker`` builds Looker Studio links, ``emulator`` points everything at
a local BigQuery emulator. ``python -m beam_pipelines.bigquery`` is the operations CLI.
"""
