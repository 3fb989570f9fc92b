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
BYTES = FieldType.BYTES

HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT",
                "TRACE", "PROPFIND")

#: A petabyte: no response is larger, and 9,000 of them still sum inside 64 bits, so the
#: gold tables' byte counts cannot overflow.
MAX_RESPONSE_BYTES = 10 ** 15

ACCESS_LOG_FIELDS = (
    Field("client_ip", S, "Client address, IPv4 or IPv6, as logged (personal data); null "
          "when the server logged a host name"),
    Field("client_host", S, "Client host name, when the server logged one instead of an "
          "address (%h with HostnameLookups on); never resolved here (personal data)"),
    Field("ident", S, "RFC 1413 identity (almost always absent: '-' in the log)"),
    Field("auth_user", S, "Authenticated user name ('-' in the log when none)"),
    Field("timestamp", TS, "When the server received the request (UTC)", required=True),
    Field("method", S, "HTTP method; null when the request line is not a request"),
    Field("path", S, "Request path without the query string"),
    Field("query", S, "Query string without the '?'"),
    Field("protocol", S, "Protocol of the request line, e.g. HTTP/1.1"),
    Field("request", S, "The request line exactly as logged", required=True),
    Field("status", INT, "HTTP status code; null when logged as '-' (no response was sent)",
          minimum=100, maximum=599),
    Field("bytes", INT, "Response body size; null when logged as '-'", unit="B", minimum=0,
          maximum=MAX_RESPONSE_BYTES),
    Field("referrer", S, "Referer header; null when absent or '-'"),
    Field("user_agent", S, "User-Agent header; null when absent or '-'"),
    Field("forwarded_for", S, "X-Forwarded-For as logged (nginx_main's last field, "
          "http_x_forwarded_for): the addresses the request came through, client first; "
          "null when '-' or not in the format (personal data)"),
    Field("vhost", S, "Virtual host that served the request (%v, %V; nginx host, "
          "server_name); null when not in the format"),
    Field("server_port", INT, "Port the request came in on (%p; nginx server_port)",
          minimum=0, maximum=65535),
    Field("request_bytes", INT, "Bytes received: request line, headers and body (%I; "
          "nginx request_length)", unit="B", minimum=0, maximum=MAX_RESPONSE_BYTES),
    Field("request_time_us", INT, "Time taken to serve the request (%D, %T; nginx "
          "request_time)", unit="µs", minimum=0),
    Field("upstream_time_us", INT, "Time the upstream servers took, summed over those "
          "tried (nginx upstream_response_time); null when none answered", unit="µs",
          minimum=0),
    Field("tls_protocol", S, "TLS protocol, e.g. TLSv1.3 (%{SSL_PROTOCOL}x; nginx "
          "ssl_protocol)"),
    Field("tls_cipher", S, "TLS cipher suite (%{SSL_CIPHER}x; nginx ssl_cipher)"),
    Field("extra_fields", S, "The format's other directives, a JSON object by directive as "
          "written (e.g. %{Cookie}i): bronze only, as they may hold personal data"),
    Field("log_format", S, "Which format the line matched (custom: a format string)",
          choices=("combined", "common", "nginx_main", "vhost_combined", "nginx_iso8601",
                   "custom")),
)

WEB_LOGS_BRONZE = RecordSchema(
    name="web_logs_bronze",
    layer="bronze",
    description="Access-log lines parsed into typed fields (Combined, Common, nginx or a "
                "declared format), with ingest metadata. Contains raw client IPs: "
                "personal data.",
    fields=ACCESS_LOG_FIELDS + INGEST_FIELDS,
    partition_field="timestamp",
    clustering=("status",),
)

GEO_FIELDS = (
    Field("geo_status", S, "located, or why not: private, reserved, unknown, or hostname "
          "(the log holds a host name, which is not looked up)", required=True,
          choices=("located", "private", "reserved", "unknown", "hostname")),
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
              "/24 for IPv4, /48 for IPv6; a host name without its first label, "
              "*.example.net) or, in hash mode, its salted hash", required=True),
        Field("visitor_id", S, "Salted hash of address and user agent: counts unique "
              "visitors without keeping who they are", required=True),
        Field("proxy_network", S, "With --trusted-proxies, the trusted proxy the client "
              "came through (the address that connected), reduced like client_network; "
              "null when the client connected itself"),
    )
    + tuple(f for f in ACCESS_LOG_FIELDS
            if f.name not in ("client_ip", "client_host", "forwarded_for", "extra_fields"))
    + INGEST_FIELDS + GEO_FIELDS + AGENT_FIELDS
    + (
        Field("status_class", S, "1xx … 5xx, or - when no status was logged", required=True,
              choices=("1xx", "2xx", "3xx", "4xx", "5xx", "-")),
        Field("event_date", D, "UTC date of the request", required=True),
        Field("hour_of_day", INT, "UTC hour of the request", minimum=0, maximum=23,
              required=True),
    ),
    partition_field="timestamp",
    clustering=("geo_country_code", "status_class"),
)

# ---- gold ---------------------------------------------------------------------------------
GOLD_WINDOW_FIELDS = (
    Field("window_start", TS, "Start of the event-time window (inclusive)", required=True),
    Field("window_end", TS, "End of the event-time window (exclusive)", required=True),
    Field("granularity", S, "Window size: minute, hour (or N s)", required=True),
    Field("pane_index", INT, "How many times this window fired before (0 in batch); the "
          "row with the highest index for a key is the current answer", required=True),
    Field("pane_timing", S, "EARLY, ON_TIME or LATE", required=True,
          choices=("EARLY", "ON_TIME", "LATE")),
)

TRAFFIC_FIELDS = (
    Field("requests", INT, "Requests in the window", required=True, minimum=0),
    Field("bytes", INT, "Response bytes sent ('-' counts as 0)", unit="B", required=True,
          minimum=0),
    Field("errors_4xx", INT, "Requests answered 4xx", required=True, minimum=0),
    Field("errors_5xx", INT, "Requests answered 5xx", required=True, minimum=0),
    Field("error_rate", F, "(4xx + 5xx) / requests", minimum=0, maximum=1),
    Field("bot_requests", INT, "Requests by crawlers, monitors and scripts", required=True,
          minimum=0),
    Field("unique_visitors", INT, "Distinct visitor_id, the estimate of visitor_sketch: "
          "exact up to about 300, then within about 1.6 % (one standard error)",
          required=True, minimum=0),
    Field("visitor_sketch", BYTES, "Apache DataSketches HLL sketch (lg_k 12, HLL_4) of "
          "visitor_id: merge rows' sketches to count the visitors of several windows, "
          "countries or cities (null where the scheduled SQL built the row)"),
)

_PLACE = (
    Field("country_code", S, "ISO 3166-1 alpha-2; null when not located"),
    Field("country", S, "Country name, or (unknown)", required=True),
    Field("geo_status", S, "located, private, reserved or unknown", required=True,
          choices=("located", "private", "reserved", "unknown")),
)


def _gold(name: str, description: str, dimensions: tuple, clustering: tuple,
          extra: tuple = (), key: tuple | None = None) -> RecordSchema:
    return RecordSchema(
        name=name, layer="gold", description=description,
        fields=GOLD_WINDOW_FIELDS + dimensions + TRAFFIC_FIELDS + extra,
        partition_field="window_start", clustering=clustering,
        key=key or ("granularity", "window_start") + tuple(f.name for f in dimensions))


WEB_TRAFFIC_BY_COUNTRY = _gold(
    "web_traffic_by_country", "Requests per window and country (seed 004's requests per "
    "country); addresses not located are their own rows.", _PLACE, ("country_code",))
WEB_TRAFFIC_BY_CITY = _gold(
    "web_traffic_by_city", "Requests per window and city, with a point for maps (seed 004's "
    "requests per city).", _PLACE + (
        Field("region", S, "Most specific subdivision"),
        Field("city", S, "City name, or (unknown)", required=True),
        Field("latitude", F, "Latitude of the city's point", unit="°"),
        Field("longitude", F, "Longitude of the city's point", unit="°"),
    ), ("country_code", "city"))
WEB_TRAFFIC_BY_STATUS = _gold(
    "web_traffic_by_status", "Requests per window and HTTP status.", (
        Field("status", INT, "HTTP status code; null for requests logged with status '-'"),
        Field("status_class", S, "1xx … 5xx, or - when no status was logged", required=True),
    ), ("status_class",))
WEB_TRAFFIC_BY_AGENT = _gold(
    "web_traffic_by_agent", "Requests per window and user-agent family and class.", (
        Field("browser", S, "User-agent family, or (unknown)", required=True),
        Field("device_class", S, "desktop, mobile, tablet, bot or other", required=True),
        Field("is_bot", B, "Crawler, monitor or script", required=True),
    ), ("browser",))
WEB_TOP_PATHS = _gold(
    "web_top_paths", "The N busiest paths per window (default 20), ranked.", (
        Field("path", S, "Request path (the request line when it was not a request)",
              required=True),
    ), ("path",), extra=(Field("rank", INT, "1 = busiest; ties by path", required=True,
                               minimum=1),),
    # Per rank: in streaming the latest pane of each rank is the current ranking.
    key=("granularity", "window_start", "rank"))
WEB_GOLD_TABLES = (WEB_TRAFFIC_BY_COUNTRY, WEB_TRAFFIC_BY_CITY, WEB_TRAFFIC_BY_STATUS,
                   WEB_TRAFFIC_BY_AGENT, WEB_TOP_PATHS)
