"""The server-metrics record kind: its rules, the row-level bronze, silver, gold and
analytics (``rules``, ``row_bronze``, ``row_silver``, ``row_gold``, ``analytics``,
``row_medallion``) and the engine on Arrow batches (``bronze``, ``silver``, ``gold``,
``aggregate``, ``incidents``, ``medallion``, ``streaming``)."""
