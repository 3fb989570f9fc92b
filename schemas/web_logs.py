"""Web access logs: the parsed request and the tables derived from it.

Bronze holds the client IP as sent: it is personal data, kept in bronze only (silver
truncates or hashes it after geolocation).
"""
from __future__ import annotations

from schemas.core import Field, FieldType, RecordSchema
from schemas.server_metrics import INGEST_FIELDS

S, INT, TS = FieldType.STRING, FieldType.INT64, FieldType.TIMESTAMP

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
