"""Sinks: batch curated records, insert them into the warehouse, then commit."""
