"""Models layer: statsmodels fits of energy and runtime per model x hardware, their diagnostics and checks."""
