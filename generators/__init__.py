"""Seeded generators of realistic telemetry: server metrics (``python -m generators metrics``)."""
