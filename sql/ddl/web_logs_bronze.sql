-- Generated from schemas/ by `make schema-docs`; do not edit by hand.
CREATE TABLE IF NOT EXISTS `${bronze}.web_logs_bronze` (
  client_ip STRING OPTIONS(description="Client address, IPv4 or IPv6, as logged (personal data); null when the server logged a host name"),
  client_host STRING OPTIONS(description="Client host name, when the server logged one instead of an address (%h with HostnameLookups on); never resolved here (personal data)"),
  ident STRING OPTIONS(description="RFC 1413 identity (almost always absent: '-' in the log)"),
  auth_user STRING OPTIONS(description="Authenticated user name ('-' in the log when none)"),
  timestamp TIMESTAMP NOT NULL OPTIONS(description="When the server received the request (UTC)"),
  method STRING OPTIONS(description="HTTP method; null when the request line is not a request"),
  path STRING OPTIONS(description="Request path without the query string"),
  query STRING OPTIONS(description="Query string without the '?'"),
  protocol STRING OPTIONS(description="Protocol of the request line, e.g. HTTP/1.1"),
  request STRING NOT NULL OPTIONS(description="The request line exactly as logged"),
  status INT64 OPTIONS(description="HTTP status code; null when logged as '-' (no response was sent)"),
  bytes INT64 OPTIONS(description="Response body size; null when logged as '-' (B)"),
  referrer STRING OPTIONS(description="Referer header; null when absent or '-'"),
  user_agent STRING OPTIONS(description="User-Agent header; null when absent or '-'"),
  forwarded_for STRING OPTIONS(description="X-Forwarded-For as logged (nginx_main's last field, http_x_forwarded_for): the addresses the request came through, client first; null when '-' or not in the format (personal data)"),
  vhost STRING OPTIONS(description="Virtual host that served the request (%v, %V; nginx host, server_name); null when not in the format"),
  server_port INT64 OPTIONS(description="Port the request came in on (%p; nginx server_port)"),
  request_bytes INT64 OPTIONS(description="Bytes received: request line, headers and body (%I; nginx request_length) (B)"),
  request_time_us INT64 OPTIONS(description="Time taken to serve the request (%D, %T; nginx request_time) (µs)"),
  upstream_time_us INT64 OPTIONS(description="Time the upstream servers took, summed over those tried (nginx upstream_response_time); null when none answered (µs)"),
  tls_protocol STRING OPTIONS(description="TLS protocol, e.g. TLSv1.3 (%{SSL_PROTOCOL}x; nginx ssl_protocol)"),
  tls_cipher STRING OPTIONS(description="TLS cipher suite (%{SSL_CIPHER}x; nginx ssl_cipher)"),
  extra_fields STRING OPTIONS(description="The format's other directives, a JSON object by directive as written (e.g. %{Cookie}i): bronze only, as they may hold personal data"),
  log_format STRING OPTIONS(description="Which format the line matched (custom: a format string)"),
  ingest_timestamp TIMESTAMP NOT NULL OPTIONS(description="When bronze accepted the record (processing time, UTC)"),
  source STRING OPTIONS(description="Where the record came from: file path or subscription")
)
PARTITION BY DATE(timestamp)
CLUSTER BY status
OPTIONS(description="Access-log lines parsed into typed fields (Combined, Common, nginx or a declared format), with ingest metadata. Contains raw client IPs: personal data.");
