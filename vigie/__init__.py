"""Vigie: streaming ingestion for Québec's school network."""

__version__ = "0.1.0"
