"""Simulated days with their ground truth (`impact simulate`), and the exporter and log faults that can be
injected into them (docs/inputs.md, docs/telemetry-faults.md)."""
