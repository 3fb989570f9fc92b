"""Looker Studio links: one Linking API URL per reporting view.

Opening a link creates a report on the user's own project with the view as its data
source (from a template report when ``template_report_id`` is given: the pages of
``docs/LOOKER.md``). Nothing is created until the user saves the report.
"""
from __future__ import annotations

from urllib.parse import urlencode

from beam_pipelines.bigquery.admin import view_files
from beam_pipelines.bigquery.warehouse import Warehouse

LINKING_API = "https://lookerstudio.google.com/reporting/create"

#: Report name per view (the rest get their view name).
TITLES = {
    "server_health_daily": "Server health",
    "server_hourly": "Servers by hour",
    "location_daily": "Locations",
    "alerts_feed": "Alerts",
    "alert_events_feed": "Alert signals (threshold, matrix, EWMA)",
    "incidents_feed": "Incidents",
    "open_incidents": "Open incidents",
    "web_requests_by_country": "Web traffic by country",
    "web_requests_by_city": "Web traffic by city",
    "web_status_codes": "HTTP status codes",
    "web_top_pages": "Top pages",
    "geo_requests_per_country": "Requests per country (silver)",
    "geo_requests_per_city": "Requests per city (silver)",
    "dead_letters_daily": "Dead letters",
}


def report_url(warehouse: Warehouse, view: str, template_report_id: str | None = None) -> str:
    params = {}
    if template_report_id:
        params["c.reportId"] = template_report_id
    params.update({
        "r.reportName": f"{warehouse.prefix}: {TITLES.get(view, view)}",
        "ds.ds0.connector": "bigQuery",
        "ds.ds0.type": "TABLE",
        "ds.ds0.projectId": warehouse.project,
        "ds.ds0.datasetId": warehouse.dataset("reporting"),
        "ds.ds0.tableId": view,
    })
    return f"{LINKING_API}?{urlencode(params)}"


def report_urls(warehouse: Warehouse, template_report_id: str | None = None) -> dict[str, str]:
    return {p.stem: report_url(warehouse, p.stem, template_report_id) for p in view_files()}
