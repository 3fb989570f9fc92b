"""Creating and removing the warehouse: datasets, tables, rule tables and reporting views.

Tables are created from the schema declaration (schema, descriptions, partitioning and
clustering), the same declaration that generates ``sql/ddl/``. Every step is idempotent and
reported as one line: ``created``, ``exists``, ``updated`` (columns added to an older
table) or ``replaced`` (views, rule tables).
"""
from __future__ import annotations

from beam_pipelines.bigquery.warehouse import DATASETS, Warehouse, table_layout
from beam_pipelines.errors import UserError
from beam_pipelines.sql_files import SQL_DIR, render_sql, reporting_view_files
from schemas.core import RecordSchema, _sql_string
from schemas.ops import ALERT_RULES, LOCATIONS, PIPELINE_SETTINGS
from schemas.render import DATASET_OF_LAYER
from schemas.render import TABLES as WAREHOUSE_TABLES  # every declared table, in order
from transforms.server_metrics.rules import ServerMetricsRules


def _client(warehouse: Warehouse):
    from beam_pipelines.bigquery.emulator import client

    return client(warehouse.project)


def api_error(exc) -> UserError:
    """A Google API error as one line."""
    return UserError(getattr(exc, "message", None) or str(exc).splitlines()[0])


def missing_datasets(warehouse: Warehouse, client=None) -> list[str]:
    from google.api_core import exceptions

    client = client or _client(warehouse)
    missing = []
    # The datasets a pipeline writes to (not the views' dataset).
    for suffix in (d for d in DATASETS if d in DATASET_OF_LAYER.values()):
        name = warehouse.dataset(suffix)
        try:
            client.get_dataset(f"{warehouse.project}.{name}", timeout=30)
        except exceptions.NotFound:
            missing.append(name)
        except exceptions.GoogleAPICallError as exc:
            raise api_error(exc) from None
    return missing


def _table(warehouse: Warehouse, schema: RecordSchema):
    from google.cloud import bigquery

    table = bigquery.Table(warehouse.table_id(schema), schema=[
        bigquery.SchemaField.from_api_repr(f) for f in schema.bigquery_schema()])
    table.description = schema.description
    layout = table_layout(schema)
    if "timePartitioning" in layout:
        table.time_partitioning = bigquery.TimePartitioning(
            type_=bigquery.TimePartitioningType.DAY, field=schema.partition_field)
    if "clustering" in layout:
        table.clustering_fields = list(schema.clustering)
    return table


def _ensure_table(client, warehouse: Warehouse, schema: RecordSchema) -> str:
    from google.api_core import exceptions

    wanted = _table(warehouse, schema)
    try:
        existing = client.get_table(wanted.reference, timeout=30)
    except exceptions.NotFound:
        client.create_table(wanted, timeout=30)
        return f"created table {wanted.full_table_id or warehouse.table_id(schema)}"
    have = {f.name: f.mode for f in existing.schema}
    added = [f for f in schema.fields if f.name not in have]
    # A column the declaration no longer requires (web logs' status, '-' when no response
    # was sent): relaxed in place, else BigQuery would refuse the rows that lack it.
    relaxed = [f for f in schema.fields
               if have.get(f.name) == "REQUIRED" and not f.required]
    table_id = warehouse.table_id(schema)
    for f in added:
        # New columns go in as NULLABLE (the rows already there have none): DDL, which
        # BigQuery applies in place.
        _query(client, f"ALTER TABLE `{table_id}` ADD COLUMN IF NOT EXISTS {f.name} "
                       f"{f.type.value} OPTIONS(description={_sql_string(f.description)})")
    if relaxed:
        # the API's schema patch: BigQuery allows REQUIRED → NULLABLE in place
        names = {f.name for f in relaxed}
        if added:  # the columns just added are part of the schema to patch
            existing = client.get_table(wanted.reference, timeout=30)
        existing.schema = [field.to_api_repr() | {"mode": "NULLABLE"}
                           if field.name in names else field.to_api_repr()
                           for field in existing.schema]
        client.update_table(existing, ["schema"], timeout=30)
    changes = ([f"added {', '.join(f.name for f in added)}"] if added else []) + (
        [f"{', '.join(f.name for f in relaxed)} may be null"] if relaxed else [])
    if changes:
        return f"updated table {table_id}: {'; '.join(changes)}"
    return f"exists  table {table_id}"


def _query(client, sql: str, params=()):
    from google.cloud import bigquery

    job = client.query(sql, job_config=bigquery.QueryJobConfig(query_parameters=list(params)))
    return job.result(timeout=300)


def _p(name: str, kind: str, value):
    from google.cloud import bigquery

    return bigquery.ScalarQueryParameter(name, kind, value)


def _rule_rows(rule) -> list[list]:
    """A rule's rows of ``alert_rules``: the rule's own threshold, then one per server type
    and per server with a threshold of its own."""
    above = rule.above is not None

    def row(limit, server_type=None, server_id=None):
        return [_p("name", "STRING", rule.name), _p("metric", "STRING", rule.metric),
                _p("severity", "STRING", rule.severity),
                _p("above", "FLOAT64", limit if above else None),
                _p("below", "FLOAT64", None if above else limit),
                _p("server_type", "STRING", server_type), _p("server_id", "STRING", server_id)]

    return ([row(rule.threshold)] + [row(v, server_type=t) for t, v in rule.by_type]
            + [row(v, server_id=i) for i, v in rule.by_server])


def load_rules(client, warehouse: Warehouse, rules: ServerMetricsRules) -> list[str]:
    """Replace the rule tables' rows with the rules file's, each table in one MERGE: a
    scheduled query that reads it meanwhile sees the old rules or the new ones, never an
    empty table (a TRUNCATE then INSERTs left a moment in which the alerts MERGE deleted
    three days of alerts)."""
    from google.cloud import bigquery

    ops = warehouse.identifiers()["ops"]
    w = rules.health_weights
    rows = {
        PIPELINE_SETTINGS: [[
            _p("high_cpu_threshold", "FLOAT64", rules.high_cpu_threshold),
            _p("high_memory_threshold", "FLOAT64", rules.high_memory_threshold),
            _p("weight_cpu", "FLOAT64", w.cpu), _p("weight_memory", "FLOAT64", w.memory),
            _p("weight_high_utilization", "FLOAT64", w.high_utilization)]],
        ALERT_RULES: [row for r in rules.alert_rules for row in _rule_rows(r)],
        LOCATIONS: [[
            _p("location", "STRING", loc.name), _p("latitude", "FLOAT64", loc.latitude),
            _p("longitude", "FLOAT64", loc.longitude)] for loc in rules.locations],
    }
    done = []
    for schema, params_per_row in rows.items():
        table = f"`{ops}.{schema.name}`"
        params, selects = [], []
        for i, row in enumerate(params_per_row):
            params += [bigquery.ScalarQueryParameter(f"{p.name}_{i}", p.type_, p.value)
                       for p in row]
            selects.append("SELECT " + ", ".join(f"@{n}_{i} AS {n}" for n in schema.names))
        if not selects:  # no rows: the table empties, in the same one statement
            selects.append("SELECT " + ", ".join(
                f"CAST(NULL AS {f.type.value}) AS {f.name}" for f in schema.fields)
                + " LIMIT 0")
        columns = ", ".join(schema.names)
        _query(client, f"MERGE {table} AS target USING ({' UNION ALL '.join(selects)}) "
                       f"AS fresh ON FALSE WHEN NOT MATCHED BY SOURCE THEN DELETE "
                       f"WHEN NOT MATCHED THEN INSERT ({columns}) VALUES ({columns})", params)
        done.append(f"replaced rows  {ops}.{schema.name}: {len(params_per_row)} from the "
                    "rules file, in one statement")
    return done


def create_views(client, warehouse: Warehouse, identifiers: dict | None = None) -> list[str]:
    """The operational views the scheduled queries read (``sql/ops``), then the
    reporting views (``sql/reporting``). ``identifiers`` overrides dataset ids."""
    done = []
    ids = {**warehouse.identifiers(), **(identifiers or {})}
    for dataset, paths in (("ops", sorted((SQL_DIR / "ops").glob("*.sql"))),
                           ("reporting", reporting_view_files())):
        for path in paths:
            _query(client, render_sql(path.read_text(encoding="utf-8"), ids))
            done.append(f"replaced view  {ids[dataset]}.{path.stem}")
    return done


def setup(warehouse: Warehouse, rules: ServerMetricsRules, client=None) -> list[str]:
    """Datasets, tables, rule rows and views; returns what was done, one line each."""
    from google.api_core import exceptions
    from google.cloud import bigquery

    client = client or _client(warehouse)
    done = []
    try:
        for suffix in DATASETS:
            dataset = bigquery.Dataset(f"{warehouse.project}.{warehouse.dataset(suffix)}")
            dataset.location = warehouse.location
            try:
                client.get_dataset(dataset.reference, timeout=30)
                done.append(f"exists  dataset {dataset.dataset_id}")
            except exceptions.NotFound:
                client.create_dataset(dataset, timeout=30)
                done.append(f"created dataset {dataset.dataset_id}")
        for schema in WAREHOUSE_TABLES:
            done.append(_ensure_table(client, warehouse, schema))
        done += load_rules(client, warehouse, rules)
        done += create_views(client, warehouse)
    except exceptions.GoogleAPICallError as exc:
        raise api_error(exc) from None
    return done


def teardown(warehouse: Warehouse, client=None) -> list[str]:
    """Delete the warehouse's datasets and everything in them."""
    from google.api_core import exceptions

    client = client or _client(warehouse)
    done = []
    for suffix in reversed(DATASETS):
        name = f"{warehouse.project}.{warehouse.dataset(suffix)}"
        try:
            client.delete_dataset(name, delete_contents=True, not_found_ok=False, timeout=60)
            done.append(f"deleted dataset {warehouse.dataset(suffix)}")
        except exceptions.NotFound:
            done.append(f"absent  dataset {warehouse.dataset(suffix)}")
        except exceptions.GoogleAPICallError as exc:
            raise api_error(exc) from None
    return done
