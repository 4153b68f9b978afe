"""inference-impact: per-request energy, carbon and water of an AI inference service."""
