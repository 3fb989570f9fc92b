-- Generated from schemas/ by `make schema-docs`; do not edit by hand.
CREATE TABLE IF NOT EXISTS `${bronze}.server_metrics_bronze` (
  server_id STRING NOT NULL OPTIONS(description="Stable identifier of the server"),
  server_name STRING OPTIONS(description="Human-readable server name, e.g. web-server-003"),
  server_type STRING OPTIONS(description="Role of the server"),
  location STRING OPTIONS(description="Data-centre region, e.g. us-east"),
  timestamp TIMESTAMP NOT NULL OPTIONS(description="Event time of the measurement (UTC)"),
  cpu_usage FLOAT64 OPTIONS(description="CPU utilisation (%)"),
  memory_usage FLOAT64 OPTIONS(description="Memory utilisation (%)"),
  disk_io FLOAT64 OPTIONS(description="Disk I/O rate (IOPS)"),
  network_in FLOAT64 OPTIONS(description="Inbound network throughput (kB/s)"),
  network_out FLOAT64 OPTIONS(description="Outbound network throughput (kB/s)"),
  temperature_c FLOAT64 OPTIONS(description="CPU package temperature (°C)"),
  power_watts FLOAT64 OPTIONS(description="Power draw at the PSU (W)"),
  voltage_v FLOAT64 OPTIONS(description="Supply voltage (seed 001's USA sensors) (V)"),
  load_1m FLOAT64 OPTIONS(description="Load average over 1 minute (processes)"),
  load_5m FLOAT64 OPTIONS(description="Load average over 5 minutes (processes)"),
  load_15m FLOAT64 OPTIONS(description="Load average over 15 minutes (processes)"),
  disk_used_gb FLOAT64 OPTIONS(description="Disk space used on the root file system (GB)"),
  disk_used_pct FLOAT64 OPTIONS(description="Disk space used on the root file system (%)"),
  region STRING OPTIONS(description="Regional source the record was mapped from (india, usa, germany); null when the producer sent the canonical record"),
  os STRING OPTIONS(description="Operating system the host runs, e.g. Linux"),
  arch STRING OPTIONS(description="Processor architecture, e.g. x86_64"),
  ingest_timestamp TIMESTAMP NOT NULL OPTIONS(description="When bronze accepted the record (processing time, UTC)"),
  source STRING OPTIONS(description="Where the record came from: file path or subscription"),
  extra_fields STRING OPTIONS(description="Fields the schema does not know, as a JSON object")
)
PARTITION BY DATE(timestamp)
CLUSTER BY server_id
OPTIONS(description="Structurally valid server metrics with typed fields and ingest metadata. Values are as sent: not yet range-checked or deduplicated.");
