"""Comparisons: this product's measured per-request energy and carbon against published estimates and measurements
(EcoLogits, ML.ENERGY)."""
