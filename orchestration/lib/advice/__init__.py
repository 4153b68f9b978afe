"""Advice: what the measured day would have cost under a better plan (energy-optimal routing, rightsizing,
carbon-aware shifting, operating settings). Pure code, no Dagster; the assets in orchestration/defs/advice/ are thin
wrappers. docs/advice.md describes the method, the configuration (advice.yml) and what it does not promise."""
