"""Web access logs: the parsed request and the tables derived from it.

Bronze holds the client IP as sent: it is personal data, kept in bronze only (silver
truncates or hashes it after geolocation). Retain bronze no longer than the law and your
users allow.
"""
from __future__ import annotations

from schemas.core import Field, FieldType, RecordSchema
from schemas.server_metrics import INGEST_FIELDS

S, INT, F, B, TS, D = (FieldType.STRING, FieldType.INT64, FieldType.FLOAT64, FieldType.BOOL,
                       FieldType.TIMESTAMP, FieldType.DATE)

HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT",
                "TRACE", "PROPFIND")

ACCESS_LOG_FIELDS = (
    Field("client_ip", S, "Client address, IPv4 or IPv6, as logged (personal data)",
          required=True),
    Field("ident", S, "RFC 1413 identity (almost always absent: '-' in the log)"),
    Field("auth_user", S, "Authenticated user name ('-' in the log when none)"),
    Field("timestamp", TS, "When the server received the request (UTC)", required=True),
    Field("method", S, "HTTP method; null when the request line is not a request"),
    Field("path", S, "Request path without the query string"),
    Field("query", S, "Query string without the '?'"),
    Field("protocol", S, "Protocol of the request line, e.g. HTTP/1.1"),
    Field("request", S, "The request line exactly as logged", required=True),
    Field("status", INT, "HTTP status code", minimum=100, maximum=599, required=True),
    Field("bytes", INT, "Response body size; null when logged as '-'", unit="B", minimum=0),
    Field("referrer", S, "Referer header; null when absent or '-'"),
    Field("user_agent", S, "User-Agent header; null when absent or '-'"),
    Field("log_format", S, "Which format the line matched", choices=("combined", "common")),
)

WEB_LOGS_BRONZE = RecordSchema(
    name="web_logs_bronze",
    layer="bronze",
    description="Access-log lines parsed into typed fields (Combined or Common Log Format), "
                "with ingest metadata. Contains raw client IPs: personal data.",
    fields=ACCESS_LOG_FIELDS + INGEST_FIELDS,
    partition_field="timestamp",
    clustering=("status",),
)

GEO_FIELDS = (
    Field("geo_status", S, "located, or why not: private, reserved, unknown", required=True,
          choices=("located", "private", "reserved", "unknown")),
    Field("geo_country_code", S, "ISO 3166-1 alpha-2 country code"),
    Field("geo_country", S, "Country name (English)"),
    Field("geo_region", S, "Most specific subdivision (state, province, county)"),
    Field("geo_city", S, "City name (English)"),
    Field("geo_latitude", F, "Latitude of the located point", unit="°", minimum=-90,
          maximum=90),
    Field("geo_longitude", F, "Longitude of the located point", unit="°", minimum=-180,
          maximum=180),
    Field("geo_asn", INT, "Autonomous system number, when the database has it"),
    Field("geo_organization", S, "Autonomous system organisation, when the database has it"),
)

AGENT_FIELDS = (
    Field("browser", S, "User-agent family, e.g. Chrome, Mobile Safari, Googlebot"),
    Field("os", S, "Operating system family, e.g. Windows, iOS, Android"),
    Field("device", S, "Device family, e.g. iPhone, Samsung SM-S918B"),
    Field("device_class", S, "What kind of client", required=True,
          choices=("desktop", "mobile", "tablet", "bot", "other")),
    Field("is_bot", B, "A crawler, monitor or script rather than a person", required=True),
)

WEB_LOGS_SILVER = RecordSchema(
    name="web_logs_silver",
    layer="silver",
    description="Geolocated, parsed and deduplicated requests. The client address is "
                "truncated (or hashed with a secret salt) after geolocation: no raw IP here.",
    fields=(
        Field("client_network", S, "The client address truncated to its network (default "
              "/24 for IPv4, /48 for IPv6) or, in hash mode, its salted hash", required=True),
        Field("visitor_id", S, "Salted hash of address and user agent: counts unique "
              "visitors without keeping who they are", required=True),
    )
    + tuple(f for f in ACCESS_LOG_FIELDS if f.name != "client_ip")
    + INGEST_FIELDS + GEO_FIELDS + AGENT_FIELDS
    + (
        Field("status_class", S, "1xx … 5xx", required=True,
              choices=("1xx", "2xx", "3xx", "4xx", "5xx")),
        Field("event_date", D, "UTC date of the request", required=True),
        Field("hour_of_day", INT, "UTC hour of the request", minimum=0, maximum=23,
              required=True),
    ),
    partition_field="timestamp",
    clustering=("geo_country_code", "status_class"),
)
