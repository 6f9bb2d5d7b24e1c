"""Metrics: pure math (math.py), feature extractors (registry), reference statistics files, scores."""
