"""Looker Studio as code: one Linking API URL for the whole warehouse's report.

The report of ``docs/LOOKER.md`` is built once as a template, with one data source per
reporting view whose Linking API alias is the view's name. :func:`warehouse_report_url`
opens a copy of it with every alias pointed at the user's own project and reporting
dataset; nothing is created until the user saves it. :func:`report_urls` gives one link
per view instead, with no template (a blank report on that view).
"""
from __future__ import annotations

import re
from urllib.parse import urlencode

from beam_pipelines.bigquery.warehouse import Warehouse
from beam_pipelines.errors import UserError
from beam_pipelines.sql_files import reporting_view_files

LINKING_API = "https://lookerstudio.google.com/reporting/create"

#: Report name per view (the rest get their view name).
TITLES = {
    "server_health_daily": "Server health",
    "server_hourly": "Servers by hour",
    "location_daily": "Locations",
    "region_minutely": "Regions, live",
    "alerts_feed": "Alerts",
    "alert_signals_feed": "Alert signals (threshold, matrix, EWMA)",
    "incidents_feed": "Incidents",
    "alert_events_feed": "Incidents (alert_events_feed)",
    "open_incidents": "Open incidents",
    "web_requests_by_country": "Web traffic by country",
    "web_requests_by_city": "Web traffic by city",
    "web_status_codes": "HTTP status codes",
    "web_top_pages": "Top pages",
    "geo_requests_per_country": "Requests per country (silver)",
    "geo_requests_per_city": "Requests per city (silver)",
    "dead_letters_daily": "Dead letters",
}


_TEMPLATE_ID = re.compile(r"^[A-Za-z0-9_-]{8,128}$")


def check_template_report_id(report_id: str) -> str:
    if not _TEMPLATE_ID.fullmatch(report_id or ""):
        raise UserError(f"template report id {report_id!r} is not a Looker Studio report id "
                        "(the part of the report's URL after /reporting/)")
    return report_id


def _data_source(warehouse: Warehouse, alias: str, view: str) -> dict[str, str]:
    return {f"ds.{alias}.connector": "bigQuery",
            f"ds.{alias}.type": "TABLE",
            f"ds.{alias}.projectId": warehouse.project,
            f"ds.{alias}.datasetId": warehouse.dataset("reporting"),
            f"ds.{alias}.tableId": view,
            f"ds.{alias}.datasourceName": f"{warehouse.prefix}: {TITLES.get(view, view)}"}


def views() -> list[str]:
    """Every reporting view: each is a data source of the report, aliased by its name."""
    return [p.stem for p in reporting_view_files()]


def warehouse_report_url(warehouse: Warehouse, template_report_id: str) -> str:
    """The whole report: a copy of the template with every data source on this warehouse."""
    params = {"c.reportId": check_template_report_id(template_report_id),
              "r.reportName": f"{warehouse.prefix}: telemetry"}
    for view in views():
        params.update(_data_source(warehouse, view, view))
    return f"{LINKING_API}?{urlencode(params)}"


def report_url(warehouse: Warehouse, view: str) -> str:
    """A blank report on one view (no template needed)."""
    params = {"r.reportName": f"{warehouse.prefix}: {TITLES.get(view, view)}",
              **_data_source(warehouse, "ds0", view)}
    return f"{LINKING_API}?{urlencode(params)}"


def report_urls(warehouse: Warehouse) -> dict[str, str]:
    return {view: report_url(warehouse, view) for view in views()}
