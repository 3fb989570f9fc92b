"""Reusable PTransforms of the medallion: bronze validation, silver cleaning, gold
aggregation. No I/O happens here: sources and sinks live in ``beam_pipelines``."""
