"""Predictions: duration, forward passes and energy of every recent request from the e_K / r_K models."""
