-- Generated from schemas/ by `make schema-docs`; do not edit by hand.
CREATE TABLE IF NOT EXISTS `${ops}.injected_faults` (
  kind STRING NOT NULL OPTIONS(description="spike, cpu_saturation, memory_leak or overheating"),
  server_id STRING NOT NULL OPTIONS(description="Server the fault was injected into"),
  start TIMESTAMP NOT NULL OPTIONS(description="When the fault began (a spike: the record's time)"),
  end TIMESTAMP NOT NULL OPTIONS(description="When it ended (a spike: the record's time)")
)
OPTIONS(description="The generator's ground truth: each fault injected into the records it wrote (python -m generators metrics --ground-truth, and the sample of python -m run), to score alerts against. Empty for real input.");
