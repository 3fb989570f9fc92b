"""The Streamlit app: one page per question an operator asks.

Started by ``python -m beam_pipelines.dashboard`` (``make dashboard``), which passes the
source after Streamlit's ``--``. Every figure comes from :mod:`queries`; this module only
lays out and draws (Vega-Lite charts through Altair, maps through pydeck on the offline
base map of :mod:`basemap`).
"""
from __future__ import annotations

import argparse
import json
import sys
import urllib.parse

import altair as alt
import pandas as pd
import pydeck as pdk
import streamlit as st

from beam_pipelines.dashboard import basemap
from beam_pipelines.dashboard import queries as q
from beam_pipelines.dashboard.sources import open_source

DBIP = ("IP geolocation by [DB-IP](https://db-ip.com), licensed under "
        "[CC BY 4.0](https://creativecommons.org/licenses/by/4.0/), unless the pipeline "
        "ran with another --geo-database.")
HEALTH_COLOURS = alt.Scale(domain=[0, 50, 75, 100], range=["#c0392b", "#e67e22",
                                                           "#f1c40f", "#27ae60"])


def _options() -> argparse.Namespace:
    p = argparse.ArgumentParser()
    p.add_argument("--lakehouse", default="lakehouse")
    p.add_argument("--bigquery-project")
    p.add_argument("--bq-dataset-prefix", default="telemetry")
    p.add_argument("--refresh", type=float, default=5.0)
    return p.parse_args(sys.argv[1:])


@st.cache_resource
def _source(lakehouse: str, project: str | None, prefix: str):
    return open_source(lakehouse, project, prefix)


OPTIONS = _options()
SOURCE = _source(OPTIONS.lakehouse, OPTIONS.bigquery_project, OPTIONS.bq_dataset_prefix)


def _needs(tables, run: str) -> bool:
    """False, with a note saying which run writes them, when tables are missing."""
    absent = q.missing(SOURCE, tables)
    if absent:
        st.info(f"No {', '.join(absent)} in {SOURCE.label} yet: run `{run}` first.")
    return not absent


def _chart(chart) -> None:
    st.altair_chart(chart, width="stretch")


def _table(frame: pd.DataFrame, **kwargs) -> None:
    st.dataframe(frame, width="stretch", hide_index=True, **kwargs)


def _fleet_filter() -> q.FleetFilter | None:
    first, last = q.fleet_days(SOURCE)
    if first is None:
        st.info("The fleet tables are empty.")
        return None
    choices = q.fleet_choices(SOURCE)
    with st.sidebar:
        st.subheader("Filters")
        start, end = _dates("dates", first, last)
        types = st.multiselect("Server type", choices["server_type"], key="types")
        places = st.multiselect("Location", choices["location"], key="locations")
        regions = st.multiselect("Region", choices["region"], key="regions",
                                 help="seed 001's regional sources; a regional server is "
                                      "located in its region")
    return q.FleetFilter(start, end, tuple(types), tuple(places), tuple(regions))


def _dates(key: str, first, last) -> tuple:
    """A date range picker (in the sidebar); while only its first day is picked, the
    whole range."""
    picked = st.date_input("Dates", (first, last), min_value=first, max_value=last, key=key)
    return tuple(picked) if isinstance(picked, (tuple, list)) and len(picked) == 2 \
        else (first, last)


# --- pages -----------------------------------------------------------------------------

def _fleet_page(title: str) -> q.FleetFilter | None:
    """A page over the fleet's gold: its title, then its filters (None: nothing to show)."""
    st.title(title)
    if not _needs(q.METRICS_TABLES, "python -m run metrics"):
        return None
    return _fleet_filter()


def fleet_health() -> None:
    where = _fleet_page("Fleet health")
    if where is None:
        return
    servers = q.server_health(SOURCE, where)
    if servers.empty:
        st.warning("No server matches these filters.")
        return
    by_type = q.health_by_type(servers)
    st.subheader("Health by server type")
    columns = st.columns(len(by_type))
    for column, row in zip(columns, by_type.itertuples(), strict=True):
        column.metric(str(row.server_type), f"{row.health_score:.0f} / 100",
                      help=f"{row.servers} server(s)")
    gauge = pd.concat([by_type.assign(part="health", value=by_type["health_score"]),
                       by_type.assign(part="rest", value=100 - by_type["health_score"])])
    _chart(alt.Chart(gauge).mark_arc(innerRadius=38, outerRadius=60).encode(
        theta=alt.Theta("value:Q", stack=True),
        color=alt.condition(alt.datum.part == "health",
                            alt.Color("health_score:Q", scale=HEALTH_COLOURS, legend=None),
                            alt.value("#eeeeee")),
        order=alt.Order("part:N"),
        tooltip=["server_type:N", alt.Tooltip("health_score:Q", format=".1f")],
    ).properties(width=130, height=130).facet(
        column=alt.Column("server_type:N", title=None)))
    st.subheader("Least healthy servers")
    _table(servers.head(10).round(1), key="least_healthy")
    hourly = q.hourly(SOURCE, where)
    left, right = st.columns(2)
    with left:
        st.subheader("CPU and memory by hour")
        _chart(alt.Chart(hourly).transform_fold(
            ["cpu_avg_pct", "memory_avg_pct"], as_=["metric", "percent"]).mark_line(
            point=True).encode(x=alt.X("hour_start:T", title=None),
                               y=alt.Y("percent:Q", title="%"), color="metric:N"))
    with right:
        st.subheader("Network by hour")
        _chart(alt.Chart(hourly).transform_fold(
            ["network_in_avg_kb_per_s", "network_out_avg_kb_per_s"],
            as_=["direction", "kb_per_s"]).mark_line(point=True).encode(
            x=alt.X("hour_start:T", title=None), y=alt.Y("kb_per_s:Q", title="KB/s"),
            color="direction:N"))
    st.subheader("CPU heatmap: location × server type")
    _chart(alt.Chart(q.cpu_heatmap(SOURCE, where)).mark_rect().encode(
        x=alt.X("server_type:N", title=None), y=alt.Y("location:N", title=None),
        color=alt.Color("cpu_avg_pct:Q", title="CPU %", scale=alt.Scale(scheme="orangered")),
        tooltip=["location:N", "server_type:N", alt.Tooltip("cpu_avg_pct:Q", format=".1f"),
                 "records:Q"]).properties(height=260))


def _base_layers() -> list:
    return [pdk.Layer("PolygonLayer", [{"polygon": p} for p in basemap.land()],
                      id="land", get_polygon="polygon", get_fill_color=[233, 236, 239],
                      get_line_color=[170, 176, 184], line_width_min_pixels=1,
                      stroked=True, filled=True),
            pdk.Layer("PathLayer", [{"path": p} for p in basemap.borders()],
                      id="borders", get_path="path", get_color=[150, 156, 166],
                      width_min_pixels=1)]


#: A map style with nothing to fetch: without a style Streamlit falls back to a tile
#: server's, which cannot be reached offline (and each failed fetch is a console error).
BLANK_STYLE = "data:application/json," + urllib.parse.quote(json.dumps(
    {"version": 8, "sources": {}, "layers": [
        {"id": "sea", "type": "background", "paint": {"background-color": "#f4f8fb"}}]},
    separators=(",", ":")))


def _deck(points: pd.DataFrame, layer: pdk.Layer, tooltip: str) -> pdk.Deck:
    view = pdk.data_utils.compute_view(points[["longitude", "latitude"]].values.tolist())
    view.zoom = min(view.zoom, 3.5)
    return pdk.Deck(layers=[*_base_layers(), layer], initial_view_state=view,
                    map_style=BLANK_STYLE, map_provider=None, tooltip={"text": tooltip})


def _health_rgb(score) -> list[int]:
    if pd.isna(score):
        return [127, 140, 141]
    return [192, 57, 43] if score < 50 else [230, 126, 34] if score < 75 else [39, 174, 96]


def fleet_map() -> None:
    where = _fleet_page("Map")
    if where is None:
        return
    places = q.locations(SOURCE, where)
    if places.empty:
        st.warning("No location with coordinates matches these filters.")
        return
    places = places.assign(colour=places["health_score"].map(_health_rgb),
                           radius=30_000 + 15_000 * places["servers"])
    layer = pdk.Layer("ScatterplotLayer", places.round(1), id="locations",
                      get_position=["longitude", "latitude"], get_fill_color="colour",
                      get_radius="radius", radius_min_pixels=6, pickable=True,
                      opacity=0.85)
    st.pydeck_chart(_deck(places, layer, "{location}: health {health_score}, "
                          "CPU {cpu_avg_pct} %, {servers} server(s)"), key="location_map")
    st.caption("Colour: health (red < 50 ≤ orange < 75 ≤ green); size: servers. "
               "Coastlines and borders: GSHHS and Basemap data (LGPL).")
    _table(places.drop(columns=["colour", "radius"]).round(1), key="locations_table")


def alerts() -> None:
    st.title("Alerts")
    if not _needs(q.ALERT_TABLES, "python -m run metrics"):
        return
    st.subheader("Open incidents")
    _table(q.open_incidents(SOURCE), key="open_incidents")
    first, last = q.fleet_days(SOURCE)
    if first is None:
        return
    feed = q.incidents(SOURCE, first, last)
    st.subheader(f"Incidents over time ({len(feed)})")
    _chart(alt.Chart(q.incidents_per_hour(feed)).mark_bar().encode(
        x=alt.X("hour:T", title=None), y=alt.Y("sum(incidents):Q", title="incidents"),
        color="family:N", column=alt.Column("severity:N", title=None),
        tooltip=["hour:T", "family:N", "severity:N", "incidents:Q"]).properties(width=320))
    st.subheader("A server's timeline")
    servers = q.servers_with_signals(SOURCE)
    if not servers:
        st.info("No signal yet.")
        return
    left, right = st.columns(2)
    server = left.selectbox("Server", servers, key="server")
    metrics = q.anomaly_metrics(SOURCE, server)
    metric = right.selectbox("EWMA metric", metrics, key="metric") if metrics else None
    charts = []
    if metric:
        band = q.ewma_band(SOURCE, server, metric)
        base = alt.Chart(band).encode(x=alt.X("timestamp:T", title=None))
        charts.append(alt.layer(
            base.mark_area(opacity=0.25).encode(y=alt.Y("low:Q", title=metric), y2="high:Q"),
            base.mark_line(strokeDash=[4, 3]).encode(y="expected:Q"),
            base.mark_point(filled=True, color="#c0392b").encode(
                y="value:Q", tooltip=["timestamp:T", "value:Q", "expected:Q", "score:Q",
                                      "severity:N"]),
        ).properties(width=820, height=220,
                     title="observed value against the expected band (expected ± 3σ)"))
    windows = q.server_windows(SOURCE, server)
    charts.append(alt.Chart(windows).mark_bar(height=14).encode(
        x=alt.X("window_start:T", title=None), x2="window_end:T",
        y=alt.Y("signal:N", title=None), color=alt.Color("signal:N", legend=None),
        tooltip=["signal:N", "window_start:T", "window_end:T"]).properties(
        width=820, height=120, title="matrix windows and threshold minutes"))
    _chart(alt.vconcat(*charts).resolve_scale(x="shared"))


def web_traffic() -> None:
    st.title("Web traffic")
    if not _needs(q.WEB_TABLES, "python -m run logs"):
        return
    first, last = q.web_days(SOURCE)
    if first is None:
        st.info("The web-log tables are empty.")
        return
    with st.sidebar:
        start, end = _dates("web_dates", first, last)
    cities = q.cities(SOURCE, start, end)
    if not cities.empty:
        radius = 20_000 + 200_000 * (cities["requests"] / cities["requests"].max()) ** 0.5
        layer = pdk.Layer("ScatterplotLayer", cities.assign(radius=radius), id="cities",
                          get_position=["longitude", "latitude"],
                          get_fill_color=[41, 128, 185, 160], get_radius="radius",
                          radius_min_pixels=2, pickable=True)
        st.subheader("Requests by city")
        st.pydeck_chart(_deck(cities, layer, "{city}, {country}: {requests} requests"),
                        key="city_map")
    left, right = st.columns(2)
    with left:
        st.subheader("Top 10 countries")
        _chart(alt.Chart(q.top_countries(SOURCE, start, end)).mark_bar().encode(
            x="requests:Q", y=alt.Y("country:N", sort="-x", title=None)))
    with right:
        st.subheader("Top 10 cities")
        _chart(alt.Chart(cities.head(10)).mark_bar().encode(
            x="requests:Q", y=alt.Y("city:N", sort="-x", title=None),
            tooltip=["city:N", "country:N", "requests:Q"]))
    st.subheader("Status codes")
    tiles = q.treemap(q.status_codes(SOURCE, start, end), "requests", "status",
                      "status_class")
    rect = alt.Chart(tiles).encode(
        x=alt.X("x:Q", axis=None, scale=alt.Scale(domain=[0, 100])), x2="x2:Q",
        y=alt.Y("y:Q", axis=None, scale=alt.Scale(domain=[0, 60])), y2="y2:Q")
    _chart(alt.layer(
        rect.mark_rect(stroke="white", strokeWidth=2).encode(
            color=alt.Color("status_class:N", title="class"),
            tooltip=["status:N", "status_class:N", "requests:Q"]),
        alt.Chart(tiles.assign(cx=(tiles["x"] + tiles["x2"]) / 2,
                               cy=(tiles["y"] + tiles["y2"]) / 2)).mark_text(
            color="white", fontWeight="bold").encode(
            x=alt.X("cx:Q", scale=alt.Scale(domain=[0, 100])),
            y=alt.Y("cy:Q", scale=alt.Scale(domain=[0, 60])), text="status:N"),
    ).properties(height=320))
    left, right = st.columns(2)
    with left:
        st.subheader("Top pages")
        _table(q.top_pages(SOURCE, start, end).round(3), key="top_pages")
    per_hour = q.traffic_per_hour(SOURCE, start, end)
    with right:
        st.subheader("Error rate and unique visitors")
        base = alt.Chart(per_hour).encode(x=alt.X("hour:T", title=None))
        _chart(alt.layer(
            base.mark_line(color="#c0392b").encode(
                y=alt.Y("error_rate:Q", title="error rate", axis=alt.Axis(format="%"))),
            base.mark_line(color="#2980b9").encode(y=alt.Y("unique_visitors:Q",
                                                           title="unique visitors")),
        ).resolve_scale(y="independent"))
    st.caption(DBIP)


def pipeline_health() -> None:
    st.title("Pipeline health")
    st.subheader("Records per layer")
    books = q.accounting(SOURCE)
    if books.empty:
        st.info(f"No pipeline output in {SOURCE.label} yet: run `python -m run` first.")
    else:
        books = books.assign(
            silver_check=books["silver_identity_holds"].map(
                {True: "✓ bronze = silver + silver dead letters",
                 False: "✗ bronze ≠ silver + silver dead letters"}),
            gold_check=books["gold_mismatches"].map(
                lambda wrong: f"✗ not silver: {wrong}" if wrong
                else "✓ every gold view counts silver"))
        _table(books.drop(columns=["silver_identity_holds", "gold_mismatches"]),
               key="accounting")
    st.subheader("Dead letters by day and reason")
    daily = q.dead_letters_daily(SOURCE)
    if daily.empty:
        st.success("No dead letters.")
    else:
        _chart(alt.Chart(daily).mark_bar().encode(
            x=alt.X("day:T", title=None), y=alt.Y("sum(records):Q", title="records"),
            color="reason:N", column=alt.Column("pipeline:N", title=None),
            tooltip=["day:T", "pipeline:N", "layer:N", "step:N", "reason:N", "records:Q"]
        ).properties(width=300))
        reason = st.selectbox("Sample payloads of", sorted(daily["reason"].unique()),
                              key="reason")
        _table(q.dead_letter_samples(SOURCE, reason), key="dead_letter_samples")
    st.subheader("Freshness")
    st.caption("Seconds since the newest record was ingested: a streaming run that keeps "
               "up stays within its window and lateness settings.")
    _table(q.freshness(SOURCE), key="freshness")


def live() -> None:
    st.title("Live")
    if not _needs(("server_metrics_silver",), "python -m run --streaming"):
        return
    every = st.sidebar.number_input("Refresh every (seconds)", min_value=1.0,
                                    max_value=3600.0, value=float(OPTIONS.refresh),
                                    step=1.0, key="refresh")
    minutes = st.sidebar.slider("Window (minutes of data)", 1, 120, 15, key="window")

    @st.fragment(run_every=every)
    def panel():
        window = q.live_window(SOURCE, minutes)
        regions = q.live_per_region(window)
        newest = window["minute"].max() if not window.empty else None
        top = st.columns(3)
        top[0].metric("Records in the window", f"{len(window):,}")
        top[1].metric("Regions", f"{window['region'].nunique():,}")
        top[2].metric("Newest minute", "—" if newest is None else f"{newest:%H:%M} UTC")
        left, right = st.columns(2)
        with left:
            st.subheader("CPU per region")
            _chart(alt.Chart(regions).mark_line(point=True).encode(
                x=alt.X("minute:T", title=None), y=alt.Y("cpu_avg_pct:Q", title="CPU %"),
                color="region:N"))
        with right:
            st.subheader("Temperature")
            _chart(alt.Chart(window.dropna(subset=["temperature_c"])).mark_bar().encode(
                x=alt.X("temperature_c:Q", bin=alt.Bin(maxbins=30), title="°C"),
                y=alt.Y("count():Q", title="records"), color="region:N"))
        st.subheader("Record volume")
        _chart(alt.Chart(regions).mark_bar().encode(
            x=alt.X("minute:T", title=None), y=alt.Y("records:Q"), color="region:N"))

    panel()


PAGES = [st.Page(fleet_health, title="Fleet health", url_path="fleet", default=True),
         st.Page(fleet_map, title="Map", url_path="map"),
         st.Page(alerts, title="Alerts", url_path="alerts"),
         st.Page(web_traffic, title="Web traffic", url_path="web"),
         st.Page(pipeline_health, title="Pipeline health", url_path="pipeline"),
         st.Page(live, title="Live", url_path="live")]

st.set_page_config(page_title="Telemetry medallion", layout="wide")
st.sidebar.caption(f"Reading {SOURCE.label}")
st.navigation(PAGES).run()
