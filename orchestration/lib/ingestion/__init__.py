"""Reading the inputs: request logs and telemetry files in bounded memory, Prometheus, OTLP spans, the
exporters' metric names, one identity per node and GPU, and the report of what the inputs got wrong
(docs/inputs.md, docs/telemetry-faults.md)."""
