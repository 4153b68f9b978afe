"""Image requests: checks on the image models and on the LoRA adapters' factors (docs/images.md)."""
