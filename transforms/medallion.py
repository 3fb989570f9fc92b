"""The whole server-metrics medallion as one composite: raw records → every table.

Sources feed it :class:`~transforms.bronze.RawRecord` elements; it returns a dict of
table name → PCollection (bronze, silver, each gold table, and all dead letters), which
sinks write. The same composite serves batch and streaming: only the edges differ.
"""
from __future__ import annotations

import apache_beam as beam

from schemas.dead_letter import DEAD_LETTERS
from schemas.server_metrics import SERVER_METRICS_BRONZE, SERVER_METRICS_SILVER
from transforms.bronze import ValidateServerMetrics
from transforms.gold import ServerMetricsGold
from transforms.rules import ServerMetricsRules
from transforms.silver import CleanServerMetrics
from transforms.windowing import StreamingConfig


class ServerMetricsMedallion(beam.PTransform):
    def __init__(self, rules: ServerMetricsRules | None = None, clock=None,
                 streaming: StreamingConfig | None = None, drop_redeliveries: bool = False):
        super().__init__()
        self._drop_redeliveries = drop_redeliveries
        self._rules = rules or ServerMetricsRules()
        self._clock = clock
        self._streaming = streaming

    def expand(self, raw):
        bronze = raw | "Bronze" >> ValidateServerMetrics(
            clock=self._clock, drop_redeliveries=self._drop_redeliveries,
            allowed_lateness_s=(self._streaming.allowed_lateness_s
                                if self._streaming is not None else None))
        silver = bronze["records"] | "Silver" >> CleanServerMetrics(
            self._rules, streaming=self._streaming)
        gold = silver["records"] | "Gold" >> ServerMetricsGold(self._rules, self._streaming)
        dead = ((bronze["dead_letters"], silver["dead_letters"])
                | "AllDeadLetters" >> beam.Flatten())
        return {
            SERVER_METRICS_BRONZE.name: bronze["records"],
            SERVER_METRICS_SILVER.name: silver["records"],
            **gold,
            DEAD_LETTERS.name: dead,
        }
