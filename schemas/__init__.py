"""Declared record schemas: the single source of truth for every table.

Each record type is declared once as a :class:`~schemas.core.RecordSchema`; the
same declaration drives bronze validation, silver range checks, the Arrow/Parquet
schema, the BigQuery JSON schema, SQL DDL and the field tables in the docs.
"""
from schemas.core import Field, FieldType, RecordSchema

__all__ = ["Field", "FieldType", "RecordSchema"]
