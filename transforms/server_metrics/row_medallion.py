"""The row-level server-metrics medallion, one record per element: raw records → every
table. The batch engine (``medallion.py``, ``streaming.py``) is held equal to it, table by
table and dead letter by dead letter; it stays the reference, and the composition of the
row-level transforms for users who work on rows.

Sources feed it :class:`~transforms.bronze.RawRecord` elements; it returns a dict of
table name → PCollection (bronze, silver, each gold table, and all dead letters), which
sinks write. The same composite serves batch and streaming: only the edges differ.
"""
from __future__ import annotations

import apache_beam as beam

from schemas.dead_letter import DEAD_LETTERS
from schemas.server_metrics import ALERTS, SERVER_METRICS_BRONZE, SERVER_METRICS_SILVER
from transforms.server_metrics.analytics import ServerMetricsAnalytics
from transforms.server_metrics.row_bronze import ValidateServerMetrics
from transforms.server_metrics.row_gold import SIGNAL_HOLDS, ServerMetricsGold
from transforms.server_metrics.row_silver import CleanServerMetrics
from transforms.server_metrics.rules import ServerMetricsRules
from transforms.windowing import BATCH, Mode


class ServerMetricsMedallion(beam.PTransform):
    def __init__(self, rules: ServerMetricsRules | None = None, clock=None,
                 mode: Mode = BATCH, drop_redeliveries: bool = False,
                 max_future_s: float | None = None):
        super().__init__()
        self._max_future = max_future_s
        self._drop_redeliveries = drop_redeliveries
        self._rules = rules or ServerMetricsRules()
        self._clock = clock
        self._mode = mode

    def expand(self, raw):
        mode = self._mode
        bronze = raw | "Bronze" >> ValidateServerMetrics(
            clock=self._clock, drop_redeliveries=self._drop_redeliveries,
            allowed_lateness_s=mode.allowed_lateness_s, max_future_s=self._max_future)
        silver = bronze["records"] | "Silver" >> CleanServerMetrics(self._rules, mode=mode)
        gold = silver["records"] | "Gold" >> ServerMetricsGold(self._rules, mode)
        holds = gold.pop(SIGNAL_HOLDS)
        analytics = ((silver["records"], gold[ALERTS.name], holds)
                     | "Analytics" >> ServerMetricsAnalytics(self._rules, mode))
        dead = ((bronze["dead_letters"], silver["dead_letters"])
                | "AllDeadLetters" >> beam.Flatten())
        return {
            SERVER_METRICS_BRONZE.name: bronze["records"],
            SERVER_METRICS_SILVER.name: silver["records"],
            **gold,
            **analytics,
            DEAD_LETTERS.name: dead,
        }
