"""The row-level web-log medallion, one line per element: raw log lines → bronze, silver,
every gold table and all dead letters, in batch or streaming. The batch engine
(``medallion.py``, ``streaming.py``) is held equal to it; it stays the reference."""
from __future__ import annotations

import apache_beam as beam

from schemas.dead_letter import DEAD_LETTERS
from transforms.windowing import BATCH, Mode


class WebLogsMedallion(beam.PTransform):
    """Raw log lines → bronze, silver (deduplicated, geolocated, private), every gold table
    and all dead letters, as a dict of table name → PCollection, in batch or streaming."""

    def __init__(self, policy, geo_database: str | None = None,
                 window_seconds: tuple[int, ...] = (60, 3600), top_n: int = 20, clock=None,
                 mode: Mode = BATCH, drop_redeliveries: bool = False,
                 dedupe_identical_lines: bool = False, max_future_s: float | None = None,
                 log_format=None):
        super().__init__()
        self._log_format = log_format  # None: the parser's default (combined)
        self._max_future = max_future_s
        self._dedupe = dedupe_identical_lines
        self._mode = mode
        self._drop_redeliveries = drop_redeliveries
        self._policy = policy
        self._geo_database = geo_database
        self._window_seconds = window_seconds
        self._top_n = top_n
        self._clock = clock

    def expand(self, raw):
        from schemas.web_logs import WEB_LOGS_BRONZE, WEB_LOGS_SILVER
        from transforms.web_logs.access_log import ParseAccessLogs
        from transforms.web_logs.row_gold import WebLogsGold
        from transforms.web_logs.row_silver import CleanWebLogs

        mode = self._mode
        bronze = raw | "Bronze" >> ParseAccessLogs(
            clock=self._clock, drop_redeliveries=self._drop_redeliveries,
            allowed_lateness_s=mode.allowed_lateness_s,
            max_future_s=self._max_future,
            **({"log_format": self._log_format} if self._log_format else {}))
        silver = bronze["records"] | "Silver" >> CleanWebLogs(
            self._policy, self._geo_database, mode=mode, dedupe_identical_lines=self._dedupe)
        gold = silver["records"] | "Gold" >> WebLogsGold(self._window_seconds, mode,
                                                         top_n=self._top_n)
        dead = ((bronze["dead_letters"], silver["dead_letters"])
                | "AllDeadLetters" >> beam.Flatten())
        return {WEB_LOGS_BRONZE.name: bronze["records"],
                WEB_LOGS_SILVER.name: silver["records"], **gold, DEAD_LETTERS.name: dead}
