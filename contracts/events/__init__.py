"""Payload models, one module per topic."""
