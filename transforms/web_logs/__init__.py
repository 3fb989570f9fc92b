"""The web-log record kind: the row-level parser, silver and gold (``access_log``,
``row_silver``, ``row_gold``, ``row_medallion``) and the engine on Arrow batches
(``bronze``, ``silver``, ``gold``, ``medallion``, ``streaming``)."""
