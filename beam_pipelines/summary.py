"""The end-of-run summary, read back from the lakehouse it describes."""
from __future__ import annotations

from beam_pipelines.catalog import connect as connect_catalog
from beam_pipelines.catalog import shell_command


def _fmt_rows(rows, headers) -> str:
    cells = [[("" if v is None else f"{v:,.1f}" if isinstance(v, float) else f"{v:,}"
               if isinstance(v, int) else str(v)) for v in row] for row in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) if cells else len(h)
              for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
    body = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(["    " + line] + ["    " + b for b in body])


#: Gold tables whose record counts add up to silver: once per record, except the sliding
#: windows of the alert matrix (window / period times).
_COUNTED = ("server_metrics_minutely", "hourly_server_metrics", "server_health_summary",
            "location_performance", "server_alert_matrix")


def accounting(con) -> dict:
    """Counts per layer and the identities every run must satisfy."""
    q = lambda sql: con.execute(sql).fetchone()[0]  # noqa: E731
    counts = {
        "bronze": q("select count(*) from server_metrics_bronze"),
        "silver": q("select count(*) from server_metrics_silver"),
        "bronze_dead": q("select count(*) from dead_letters where layer = 'bronze'"),
        "silver_dead": q("select count(*) from dead_letters where layer = 'silver'"),
    }
    for table in _COUNTED:
        counts[table] = q(f"select coalesce(sum(record_count), 0) from {table}")
    counts["input"] = counts["bronze"] + counts["bronze_dead"]
    return counts


def _input_lines(input_records: int | None, bronze: int, bronze_dead: int,
                 ok) -> list[str]:
    """The input line and bronze's check against it: the input is counted apart from the
    pipeline (the files' records, or what the live source handed over), so the ✓ says that
    every record read is in bronze or a bronze dead letter, and ✗ that some are not."""
    if input_records is None:
        return [f"  input   {bronze + bronze_dead:>10,}   (not counted apart on this sink)",
                f"  bronze  {bronze:>10,} accepted  + {bronze_dead:>7,} dead letters"]
    return [f"  input   {input_records:>10,}",
            f"  bronze  {bronze:>10,} accepted  + {bronze_dead:>7,} dead letters"
            f"   {ok(input_records == bronze + bronze_dead)}"]


def render(catalog: str, output_dir: str, matrix_copies: int = 3,
           input_records: int | None = None) -> str:
    """``matrix_copies``: sliding windows per record (alert matrix window / period);
    ``input_records``: the records read, counted apart from the pipeline."""
    with connect_catalog(catalog) as con:
        c = accounting(con)
        ok = lambda b: "✓" if b else "✗ MISMATCH"  # noqa: E731
        out = ["", "Records per layer"]
        out += _input_lines(input_records, c["bronze"], c["bronze_dead"], ok)
        out.append(f"  silver  {c['silver']:>10,} accepted  + {c['silver_dead']:>7,} dead letters"
                   f"   {ok(c['bronze'] == c['silver'] + c['silver_dead'])}")
        for table in _COUNTED:
            copies = matrix_copies if table == "server_alert_matrix" else 1
            rows = con.execute(f"select count(*) from {table}").fetchone()[0]
            note = f" (each record in {copies} sliding windows)" if copies > 1 else ""
            out.append(f"  gold    {table:<24} {rows:>7,} rows over {c[table]:,} records"
                       f"   {ok(c[table] == c['silver'] * copies)}{note}")
        reasons = con.execute("select layer, reason, count(*) n from dead_letters "
                              "group by all order by n desc, layer, reason").fetchall()
        out.append("")
        out.append("Dead letters by reason" + ("" if reasons else ": none"))
        if reasons:
            out.append(_fmt_rows(reasons, ("layer", "reason", "records")))
        worst = con.execute("""
            select coalesce(server_name, server_id), server_type, location, metric_date,
                   server_health_score, avg_cpu_usage, avg_memory_usage, high_utilization_pct
            from server_health_summary
            qualify row_number() over (partition by server_id
                                       order by server_health_score nulls last) = 1
            order by server_health_score nulls last limit 5""").fetchall()
        out.append("")
        out.append("Five least healthy servers (worst day)")
        out.append(_fmt_rows(worst, ("server", "type", "location", "date", "health",
                                     "avg cpu %", "avg mem %", "high util %")))
        alerts = con.execute("select rule, severity, count(*), count(distinct server_id) "
                             "from alerts group by all order by 3 desc").fetchall()
        out.append("")
        out.append("Alerts" + ("" if alerts else ": none"))
        if alerts:
            out.append(_fmt_rows(alerts, ("rule", "severity", "server-minutes", "servers")))
        feed = con.execute("select family, rule, severity, count(*), count(distinct server_id) "
                           "from alert_signals group by all order by 1, 4 desc").fetchall()
        out.append("")
        out.append("Alert signals, every rule (alert_signals)" + ("" if feed else ": none"))
        if feed:
            out.append(_fmt_rows(feed, ("family", "rule", "severity", "signals", "servers")))
        paged = con.execute("""
            select i.severity, count(*), count(distinct i.server_id),
                   sum(i.signal_count), count(*) filter (where i.resolved_at is null),
                   (select count(*) from alert_notifications n
                    where n.severity = i.severity) as notified
            from alert_incidents i where i.fired_at is not null
            group by all order by 1""").fetchall()
        lapsed = con.execute("select count(*) from alert_incidents "
                             "where fired_at is null").fetchone()[0]
        signals = sum(r[3] for r in feed)
        incidents = sum(r[1] for r in paged)
        out.append("")
        out.append(f"Incidents (alert_incidents): {incidents:,} paged from {signals:,} signals;"
                   f" {lapsed:,} more lapsed while pending (never paged)")
        if paged:
            out.append(_fmt_rows(paged, ("severity", "incidents", "servers", "signals",
                                         "open", "notifications")))
    out.append("")
    out.append(f"Output: {output_dir}  (Parquet per table)")
    out.append(f"Query:  {shell_command(output_dir, 'select * from server_health_summary')}")
    return "\n".join(out)


def render_logs(catalog: str, output_dir: str, input_records: int | None = None) -> str:
    """The web-log run's summary: the identities, dead letters, and where the traffic came
    from (seed 004's dashboard: top countries and cities)."""
    with connect_catalog(catalog) as con:
        q = lambda sql: con.execute(sql).fetchone()[0]  # noqa: E731
        bronze = q("select count(*) from web_logs_bronze")
        silver = q("select count(*) from web_logs_silver")
        bronze_dead = q("select count(*) from dead_letters where layer = 'bronze'")
        silver_dead = q("select count(*) from dead_letters where layer = 'silver'")
        ok = lambda b: "✓" if b else "✗ MISMATCH"  # noqa: E731
        out = ["", "Records per layer",
               *_input_lines(input_records, bronze, bronze_dead, ok),
               f"  silver  {silver:>10,} accepted  + {silver_dead:>7,} dead letters   "
               f"{ok(bronze == silver + silver_dead)}"]
        for table in ("web_traffic_by_country", "web_traffic_by_city",
                      "web_traffic_by_status", "web_traffic_by_agent"):
            for granularity in con.execute(f"select distinct granularity from {table} "
                                           "order by 1").fetchall():
                total = q(f"select coalesce(sum(requests), 0) from {table} "
                          f"where granularity = '{granularity[0]}'")
                out.append(f"  gold    {table:<24} {granularity[0]:<7} {total:>9,} requests"
                           f"   {ok(total == silver)}")
        reasons = con.execute("select layer, reason, count(*) n from dead_letters "
                              "group by all order by n desc, layer, reason").fetchall()
        out += ["", "Dead letters by reason" + ("" if reasons else ": none")]
        if reasons:
            out.append(_fmt_rows(reasons, ("layer", "reason", "records")))
        hour = "granularity = (select max(granularity) from web_traffic_by_country)"
        countries = con.execute(f"""
            select coalesce(country_code, geo_status) code, country, sum(requests) requests,
                   round(100.0 * sum(requests) / {max(silver, 1)}, 1) pct,
                   round(100.0 * sum(errors_4xx + errors_5xx) / sum(requests), 1) errors
            from web_traffic_by_country where {hour}
            group by all order by requests desc, code limit 10""").fetchall()
        out += ["", "Top countries", _fmt_rows(countries, ("code", "country", "requests",
                                                           "% of all", "error %"))]
        cities = con.execute(f"""
            select city, country, sum(requests) requests, any_value(latitude) lat,
                   any_value(longitude) lon
            from web_traffic_by_city where {hour.replace('country', 'city')}
            group by all order by requests desc, city limit 10""").fetchall()
        out += ["", "Top cities", _fmt_rows(cities, ("city", "country", "requests",
                                                     "latitude", "longitude"))]
    out += ["", "IP geolocation by DB-IP (https://db-ip.com), licensed under CC BY 4.0, "
            "unless --geo-database says otherwise.",
            f"Output: {output_dir}  (Parquet per table)",
            f"Query:  {shell_command(output_dir, 'select * from web_traffic_by_country')}"]
    return "\n".join(out)
