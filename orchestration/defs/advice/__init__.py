"""Advice layer: routing, rightsizing, shifting and settings advice from the measured data (lib/advice)."""
