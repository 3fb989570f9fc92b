"""The DuckDB reference of the web-log benchmark: one single-threaded SQL script that
parses the same access log with a regular expression, geolocates each distinct client
address with the same database (the lookups are part of its time: a user of DuckDB has to
do them too), and writes the per-minute traffic by country and by status to Parquet.

It is the yardstick of what a columnar engine does with the core of the work; the pipeline
does more (dedupe, user agents, privacy, three more tables, the hour windows, bronze and
silver written), so the ratio is conservative.
"""
from __future__ import annotations

import os

import duckdb

# Combined or Common Log Format, as the pipeline's row-level parser reads it.
_LINE = (r'^(\S+) (\S+) (\S+) \[([^\]]+)\] "((?:[^"\\]|\\.)*)" (\d{3}) (\S+)'
         r'(?: "((?:[^"\\]|\\.)*)"(?: "((?:[^"\\]|\\.)*)")?)?')
_GROUPS = ["host", "ident", "auth_user", "time", "request", "status", "bytes", "referrer",
           "agent"]
_TRAFFIC = """count(*) AS requests, sum(coalesce(bytes, 0)) AS bytes,
    count(*) FILTER (WHERE status BETWEEN 400 AND 499) AS errors_4xx,
    count(*) FILTER (WHERE status >= 500) AS errors_5xx,
    count(DISTINCT host || '|' || coalesce(agent, '')) AS unique_visitors"""


def run_logs_duckdb(path: str, output_dir: str, database: str | None = None) -> dict:
    from transforms.geo import GeoDatabase, default_database

    os.makedirs(output_dir, exist_ok=True)
    con = duckdb.connect()
    con.execute("SET threads = 1")
    con.execute("SET TimeZone = 'UTC'")
    names = ", ".join(f"'{g}'" for g in _GROUPS)
    con.execute(f"""
        CREATE TEMP TABLE parsed AS
        WITH lines AS (
            SELECT regexp_extract(line, '{_LINE.replace("'", "''")}', [{names}]) AS f
            FROM read_csv('{path}', columns = {{'line': 'VARCHAR'}}, delim = '\\x01',
                          quote = '', escape = '', header = false, auto_detect = false,
                          ignore_errors = true)
        )
        SELECT f.host AS host,
               try_strptime(f.time, '%d/%b/%Y:%H:%M:%S %z')::TIMESTAMP AS ts,
               f.request AS request, TRY_CAST(f.status AS INTEGER) AS status,
               TRY_CAST(nullif(f.bytes, '-') AS BIGINT) AS bytes,
               nullif(nullif(f.agent, '-'), '') AS agent
        FROM lines WHERE f.host <> ''""")
    con.execute("DELETE FROM parsed WHERE ts IS NULL OR status IS NULL")
    hosts = [h for (h,) in con.execute("SELECT DISTINCT host FROM parsed").fetchall()]
    geo = GeoDatabase(database or default_database())
    rows = []
    for host in hosts:
        try:
            place = geo.lookup(host)
        except ValueError:  # a host name: not located
            rows.append((host, None, "(unknown)"))
            continue
        rows.append((host, place.country_code, place.country or "(unknown)"))
    geo.close()
    con.execute("CREATE TEMP TABLE geo (host VARCHAR, country_code VARCHAR, country VARCHAR)")
    con.executemany("INSERT INTO geo VALUES (?, ?, ?)", rows)
    by_country = os.path.join(output_dir, "web_traffic_by_country.parquet")
    by_status = os.path.join(output_dir, "web_traffic_by_status.parquet")
    con.execute(f"""
        COPY (SELECT date_trunc('minute', ts) AS window_start, g.country_code, g.country,
                     {_TRAFFIC}
              FROM parsed JOIN geo g USING (host) GROUP BY ALL)
        TO '{by_country}' (FORMAT parquet)""")
    con.execute(f"""
        COPY (SELECT date_trunc('minute', ts) AS window_start, status, {_TRAFFIC}
              FROM parsed GROUP BY ALL)
        TO '{by_status}' (FORMAT parquet)""")
    counts = {
        "parsed": con.execute("SELECT count(*) FROM parsed").fetchone()[0],
        "web_traffic_by_country": con.execute(
            f"SELECT count(*) FROM '{by_country}'").fetchone()[0],
        "web_traffic_by_status": con.execute(
            f"SELECT count(*) FROM '{by_status}'").fetchone()[0],
    }
    con.close()
    return counts
