"""Vigie: streaming ingestion for Québec's school network (the composition root: CLI,
embedded runtime, settings)."""

from importlib.metadata import version

__version__ = version("vigie")
