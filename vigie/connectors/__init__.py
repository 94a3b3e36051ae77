"""Connectors: change detection at each CSS → Avro batches on the CSS's raw topics."""
