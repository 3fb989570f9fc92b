"""What each dashboard panel shows, as data: one function per question, over a source.

The SQL is BigQuery's dialect against the reporting views (``${reporting}``) wherever a
view answers the question, so the Looker Studio report and the dashboard read the same
rows; the gold, silver and ops tables only where no view does (a server's signals, the
live window, the accounting). Filters on a handful of values (server type, location) are
applied to the small results in pandas; time ranges go to the query as parameters.
These functions return pandas DataFrames and know nothing of Streamlit, so they are
tested alone, against the lakehouse and the BigQuery emulator alike.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import pandas as pd

#: Tables each page needs; a page over a lakehouse without them says which run to make.
METRICS_TABLES = ("server_health_summary", "hourly_server_metrics", "location_performance")
ALERT_TABLES = ("alert_incidents", "anomalies", "server_alert_matrix", "alerts")
WEB_TABLES = ("web_logs_silver", "web_traffic_by_city", "web_traffic_by_country",
              "web_traffic_by_status", "web_top_paths")
#: The medallion's pipelines, their bronze and silver tables (the accounting identities).
PIPELINES = {"server_metrics": ("server_metrics_bronze", "server_metrics_silver"),
             "web_logs": ("web_logs_bronze", "web_logs_silver")}
#: Per pipeline, reporting views whose counts each add up to silver (every silver record
#: in exactly one row of each).
GOLD_COUNTS = {"server_metrics": (("server_health_daily", "records"),
                                  ("server_hourly", "records"),
                                  ("location_daily", "records")),
               "web_logs": (("web_requests_by_country", "requests"),
                            ("web_status_codes", "requests"))}


@dataclass(frozen=True)
class FleetFilter:
    start: dt.date
    end: dt.date
    server_types: tuple = field(default=())   # empty: all
    locations: tuple = field(default=())
    #: seed 001's regions; a regional server's location is its region, so this keeps the
    #: rows located there (the others have a data-centre location, never a region name)
    regions: tuple = field(default=())

    def apply(self, frame: pd.DataFrame) -> pd.DataFrame:
        keep = pd.Series(True, index=frame.index)
        if self.server_types and "server_type" in frame:
            keep &= frame["server_type"].isin(self.server_types)
        if self.locations and "location" in frame:
            keep &= frame["location"].isin(self.locations)
        if self.regions and "location" in frame:
            keep &= frame["location"].isin(self.regions)
        return frame[keep]


def missing(source, tables) -> list[str]:
    return [t for t in tables if not source.has(t)]


# --- Fleet health ----------------------------------------------------------------------

def fleet_days(source) -> tuple[dt.date | None, dt.date | None]:
    row = source.query("SELECT MIN(day) AS first, MAX(day) AS last "
                       "FROM `${reporting}.server_health_daily`").iloc[0]
    first, last = row["first"], row["last"]
    if pd.isna(first):
        return None, None
    return pd.Timestamp(first).date(), pd.Timestamp(last).date()


def fleet_choices(source) -> dict[str, list[str]]:
    frame = source.query("SELECT DISTINCT server_type, location "
                         "FROM `${reporting}.server_health_daily`")
    regions = source.query("SELECT DISTINCT region FROM `${silver}.server_metrics_silver` "
                           "WHERE region IS NOT NULL")
    return {"server_type": sorted(frame["server_type"].dropna().unique()),
            "location": sorted(frame["location"].dropna().unique()),
            "region": sorted(regions["region"])}


def server_health(source, where: FleetFilter) -> pd.DataFrame:
    """Per server over the range: health (mean of its days), CPU and memory."""
    daily = where.apply(source.query(
        "SELECT * FROM `${reporting}.server_health_daily` "
        "WHERE day BETWEEN @start AND @end", start=where.start, end=where.end))
    if daily.empty:
        return daily
    return (daily.groupby(["server_id", "server", "server_type", "location"], dropna=False)
            .agg(health_score=("health_score_points", "mean"),
                 cpu_avg_pct=("cpu_avg_pct", "mean"), cpu_peak_pct=("cpu_peak_pct", "max"),
                 memory_avg_pct=("memory_avg_pct", "mean"), records=("records", "sum"))
            .reset_index().sort_values("health_score"))


def health_by_type(servers: pd.DataFrame) -> pd.DataFrame:
    return (servers.groupby("server_type", dropna=False)
            .agg(health_score=("health_score", "mean"), servers=("server_id", "nunique"))
            .reset_index())


def hourly(source, where: FleetFilter) -> pd.DataFrame:
    """Fleet CPU, memory and network per hour (means over the servers)."""
    frame = where.apply(source.query(
        "SELECT hour_start, server_type, location, cpu_avg_pct, memory_avg_pct, "
        "network_in_avg_kb_per_s, network_out_avg_kb_per_s "
        "FROM `${reporting}.server_hourly` WHERE day BETWEEN @start AND @end",
        start=where.start, end=where.end))
    if frame.empty:
        return frame
    return (frame.groupby("hour_start")
            [["cpu_avg_pct", "memory_avg_pct", "network_in_avg_kb_per_s",
              "network_out_avg_kb_per_s"]].mean().reset_index())


def cpu_heatmap(source, where: FleetFilter) -> pd.DataFrame:
    """Mean CPU per location and server type (the cells of seed 000's heatmap)."""
    frame = where.apply(source.query(
        "SELECT location, server_type, cpu_avg_pct, records "
        "FROM `${reporting}.location_daily` WHERE day BETWEEN @start AND @end",
        start=where.start, end=where.end))
    if frame.empty:
        return frame
    frame = frame.assign(weighted=frame["cpu_avg_pct"] * frame["records"])
    cells = frame.groupby(["location", "server_type"], dropna=False)[
        ["weighted", "records"]].sum().reset_index()
    cells["cpu_avg_pct"] = cells["weighted"] / cells["records"]
    return cells.drop(columns="weighted")


# --- Map -------------------------------------------------------------------------------

def locations(source, where: FleetFilter) -> pd.DataFrame:
    """Per location: its point, servers, load and health over the range."""
    load = where.apply(source.query(
        "SELECT location, server_type, location_point, servers, cpu_avg_pct, "
        "memory_avg_pct, records FROM `${reporting}.location_daily` "
        "WHERE day BETWEEN @start AND @end", start=where.start, end=where.end))
    if load.empty:
        return load
    point = load["location_point"].str.split(",", expand=True)
    load = load.assign(latitude=pd.to_numeric(point[0]), longitude=pd.to_numeric(point[1]))
    # servers: per type its most on a day, summed over the types
    servers = load.groupby(["location", "server_type"])["servers"].max() \
        .groupby("location").sum()
    per = (load.groupby("location")
           .agg(latitude=("latitude", "first"), longitude=("longitude", "first"),
                cpu_avg_pct=("cpu_avg_pct", "mean"),
                memory_avg_pct=("memory_avg_pct", "mean"), records=("records", "sum"))
           .reset_index())
    per = per.merge(servers.rename("servers"), left_on="location", right_index=True)
    health = server_health(source, where).groupby("location")["health_score"].mean()
    return per.merge(health.rename("health_score"), left_on="location", right_index=True,
                     how="left").dropna(subset=["latitude", "longitude"])


# --- Alerts ----------------------------------------------------------------------------

def open_incidents(source) -> pd.DataFrame:
    return source.query("SELECT * FROM `${reporting}.open_incidents` ORDER BY started_at")


def incidents(source, start: dt.date, end: dt.date) -> pd.DataFrame:
    return source.query("SELECT * FROM `${reporting}.incidents_feed` "
                        "WHERE day BETWEEN @start AND @end ORDER BY started_at",
                        start=start, end=end)


def incidents_per_hour(feed: pd.DataFrame) -> pd.DataFrame:
    """Incidents started per hour, by family (an incident of two families counts in
    both) and severity."""
    if feed.empty:
        return pd.DataFrame(columns=["hour", "family", "severity", "incidents"])
    rows = feed.assign(family=feed["families"].str.split(","),
                       hour=pd.to_datetime(feed["started_at"]).dt.floor("h")).explode("family")
    return (rows.groupby(["hour", "family", "severity"]).size()
            .rename("incidents").reset_index())


def servers_with_signals(source) -> list[str]:
    frame = source.query("SELECT DISTINCT server_id FROM `${gold}.anomalies` "
                         "UNION DISTINCT SELECT DISTINCT server_id FROM `${gold}.alerts`")
    return sorted(frame["server_id"].dropna())


def ewma_band(source, server_id: str, metric: str) -> pd.DataFrame:
    """A server's EWMA signals on a metric: observed value against the expected band
    (expected ± 3 standard deviations, the detector's rule)."""
    frame = source.query(
        "SELECT timestamp, value, expected, std, score, severity FROM `${gold}.anomalies` "
        "WHERE server_id = @server AND metric = @metric ORDER BY timestamp",
        server=server_id, metric=metric)
    return frame.assign(low=frame["expected"] - 3 * frame["std"],
                        high=frame["expected"] + 3 * frame["std"])


def anomaly_metrics(source, server_id: str) -> list[str]:
    return sorted(source.query("SELECT DISTINCT metric FROM `${gold}.anomalies` "
                               "WHERE server_id = @server", server=server_id)["metric"])


def server_windows(source, server_id: str) -> pd.DataFrame:
    """A server's alert windows on one time axis: matrix windows and threshold minutes."""
    matrix = source.query(
        "WITH latest AS (SELECT * FROM `${gold}.server_alert_matrix` "
        "WHERE server_id = @server QUALIFY ROW_NUMBER() OVER ("
        "PARTITION BY window_start ORDER BY pane_index DESC) = 1) "
        "SELECT window_start, window_end, 'matrix: cpu_memory' AS signal FROM latest "
        "WHERE cpu_memory_alert IS NOT NULL UNION ALL "
        "SELECT window_start, window_end, 'matrix: network_disk' AS signal FROM latest "
        "WHERE network_disk_alert IS NOT NULL", server=server_id)
    threshold = source.query(
        "SELECT window_start, window_end, CONCAT('threshold: ', rule) AS signal "
        "FROM `${reporting}.alerts_feed` WHERE server_id = @server", server=server_id)
    return pd.concat([matrix, threshold], ignore_index=True)


# --- Web traffic -----------------------------------------------------------------------

def web_days(source) -> tuple[dt.date | None, dt.date | None]:
    row = source.query("SELECT MIN(day) AS first, MAX(day) AS last "
                       "FROM `${reporting}.web_requests_by_country`").iloc[0]
    if pd.isna(row["first"]):
        return None, None
    return pd.Timestamp(row["first"]).date(), pd.Timestamp(row["last"]).date()


def cities(source, start: dt.date, end: dt.date) -> pd.DataFrame:
    frame = source.query(
        "SELECT country, city, city_point, SUM(requests) AS requests, "
        "SUM(errors_4xx + errors_5xx) AS errors FROM `${reporting}.web_requests_by_city` "
        "WHERE day BETWEEN @start AND @end AND city_point IS NOT NULL "
        "GROUP BY country, city, city_point ORDER BY requests DESC", start=start, end=end)
    point = frame["city_point"].str.split(",", expand=True)
    if frame.empty:
        return frame.assign(latitude=[], longitude=[])
    return frame.assign(latitude=pd.to_numeric(point[0]), longitude=pd.to_numeric(point[1]))


def top_countries(source, start: dt.date, end: dt.date, limit: int = 10) -> pd.DataFrame:
    return source.query(
        "SELECT country, SUM(requests) AS requests FROM `${reporting}.web_requests_by_country` "
        "WHERE day BETWEEN @start AND @end GROUP BY country "
        f"ORDER BY requests DESC, country LIMIT {int(limit)}", start=start, end=end)


def status_codes(source, start: dt.date, end: dt.date) -> pd.DataFrame:
    return source.query(
        "SELECT status_class, COALESCE(CAST(status AS STRING), '-') AS status, "
        "SUM(requests) AS requests "
        "FROM `${reporting}.web_status_codes` WHERE day BETWEEN @start AND @end "
        "GROUP BY status_class, status ORDER BY requests DESC", start=start, end=end)


def treemap(frame: pd.DataFrame, value: str, label: str, group: str,
            width: float = 100.0, height: float = 60.0) -> pd.DataFrame:
    """Rectangles of a squarified treemap (``x, x2, y, y2``) for ``frame``'s rows, sized
    by ``value`` and kept together by ``group`` (Vega-Lite has no treemap mark)."""
    import squarify

    rows = frame[frame[value] > 0].sort_values([group, value], ascending=[True, False])
    if rows.empty:
        return rows.assign(x=[], x2=[], y=[], y2=[])
    groups = rows.groupby(group, sort=False)[value].sum().sort_values(ascending=False)
    outer = squarify.squarify(squarify.normalize_sizes(groups.tolist(), width, height),
                              0, 0, width, height)
    parts = []
    for (name, _), box in zip(groups.items(), outer, strict=True):
        members = rows[rows[group] == name].sort_values(value, ascending=False)
        inner = squarify.squarify(squarify.normalize_sizes(
            members[value].tolist(), box["dx"], box["dy"]), box["x"], box["y"],
            box["dx"], box["dy"])
        parts.append(members.assign(
            x=[r["x"] for r in inner], x2=[r["x"] + r["dx"] for r in inner],
            y=[r["y"] for r in inner], y2=[r["y"] + r["dy"] for r in inner]))
    return pd.concat(parts, ignore_index=True)


def top_pages(source, start: dt.date, end: dt.date, limit: int = 10) -> pd.DataFrame:
    return source.query(
        "SELECT path, SUM(requests) AS requests, "
        "SAFE_DIVIDE(SUM(error_rate * requests), SUM(requests)) AS error_rate "
        "FROM `${reporting}.web_top_pages` WHERE day BETWEEN @start AND @end "
        f"GROUP BY path ORDER BY requests DESC, path LIMIT {int(limit)}", start=start, end=end)


def traffic_per_hour(source, start: dt.date, end: dt.date) -> pd.DataFrame:
    """Requests, error rate and unique visitors per hour. Visitors are counted distinct
    in silver: summing a per-country count would count a roaming visitor twice."""
    return source.query(
        "SELECT TIMESTAMP_TRUNC(timestamp, HOUR) AS hour, COUNT(*) AS requests, "
        "COUNTIF(status >= 400) / COUNT(*) AS error_rate, "
        "COUNT(DISTINCT visitor_id) AS unique_visitors "
        "FROM `${silver}.web_logs_silver` WHERE event_date BETWEEN @start AND @end "
        "GROUP BY hour ORDER BY hour", start=start, end=end)


# --- Pipeline health -------------------------------------------------------------------

def accounting(source) -> pd.DataFrame:
    """Per pipeline: records per layer and the identities every run must keep:
    bronze = silver + silver dead letters, and silver = the records each gold view counts
    (read = bronze + bronze dead letters by construction: the input itself is not
    stored)."""
    rows = []
    dead = source.query("SELECT pipeline, layer, COUNT(*) AS records "
                        "FROM `${ops}.dead_letters` GROUP BY pipeline, layer")
    for pipeline, (bronze, silver) in PIPELINES.items():
        if not (source.has(bronze) and source.has(silver)):
            continue
        counts = source.query(
            f"SELECT (SELECT COUNT(*) FROM `${{bronze}}.{bronze}`) AS bronze, "
            f"(SELECT COUNT(*) FROM `${{silver}}.{silver}`) AS silver").iloc[0]
        n_bronze, n_silver = int(counts["bronze"]), int(counts["silver"])
        mine = dead[dead["pipeline"] == pipeline].set_index("layer")["records"]
        dead_bronze, dead_silver = int(mine.get("bronze", 0)), int(mine.get("silver", 0))
        gold = {view: int(source.query(f"SELECT COALESCE(SUM({column}), 0) AS n "
                                       f"FROM `${{reporting}}.{view}`").iloc[0]["n"])
                for view, column in GOLD_COUNTS[pipeline]}
        rows.append({"pipeline": pipeline, "read": n_bronze + dead_bronze,
                     "bronze": n_bronze, "bronze_dead_letters": dead_bronze,
                     "silver": n_silver, "silver_dead_letters": dead_silver,
                     "silver_identity_holds": n_bronze == n_silver + dead_silver,
                     "gold_mismatches": ", ".join(f"{view} {n:,}" for view, n in gold.items()
                                                  if n != n_silver)})
    return pd.DataFrame(rows)


def dead_letters_daily(source) -> pd.DataFrame:
    return source.query("SELECT * FROM `${reporting}.dead_letters_daily` "
                        "ORDER BY day, pipeline, layer, reason")


def dead_letter_samples(source, reason: str, limit: int = 20) -> pd.DataFrame:
    return source.query(
        "SELECT processing_timestamp, pipeline, layer, step, reason, message, payload "
        "FROM `${ops}.dead_letters` WHERE reason = @reason "
        f"ORDER BY processing_timestamp DESC LIMIT {int(limit)}", reason=reason)


def freshness(source) -> pd.DataFrame:
    """Per pipeline: the newest record's event and ingest times, and the lag between
    now and the newest ingest (how far behind a streaming run is)."""
    rows = []
    for pipeline, (_, silver) in PIPELINES.items():
        if not source.has(silver):
            continue
        row = source.query(f"SELECT MAX(timestamp) AS newest_event, "
                           f"MAX(ingest_timestamp) AS newest_ingest "
                           f"FROM `${{silver}}.{silver}`").iloc[0]
        newest = row["newest_ingest"]
        lag = None if pd.isna(newest) else \
            (pd.Timestamp.now(tz="UTC") - _utc(newest)).total_seconds()
        rows.append({"pipeline": pipeline, "newest_event": row["newest_event"],
                     "newest_ingest": newest,
                     "seconds_since_newest_ingest": None if lag is None else round(lag, 1)})
    return pd.DataFrame(rows)


def _utc(value) -> pd.Timestamp:
    stamp = pd.Timestamp(value)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


# --- Live ------------------------------------------------------------------------------

def live_window(source, minutes: int = 15) -> pd.DataFrame:
    """Silver metrics of the last ``minutes`` of data (up to the newest record, so a
    finished run shows its last minutes too), by region: a regional record's region, else
    its location."""
    return source.query(
        "SELECT TIMESTAMP_TRUNC(timestamp, MINUTE) AS minute, "
        "COALESCE(region, location, '(none)') AS region, cpu_usage, temperature_c "
        "FROM `${silver}.server_metrics_silver` WHERE timestamp >= TIMESTAMP_SUB("
        "(SELECT MAX(timestamp) FROM `${silver}.server_metrics_silver`), "
        "INTERVAL @minutes MINUTE)", minutes=minutes)


def live_per_region(window: pd.DataFrame) -> pd.DataFrame:
    if window.empty:
        return pd.DataFrame(columns=["minute", "region", "cpu_avg_pct", "records"])
    return (window.groupby(["minute", "region"])
            .agg(cpu_avg_pct=("cpu_usage", "mean"), records=("cpu_usage", "size"))
            .reset_index())
