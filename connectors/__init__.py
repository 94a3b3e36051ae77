"""Connectors: change detection at each CSS → Avro batches on the CSS's raw topics."""

from importlib.metadata import version

# Sent in every heartbeat so the ministry sees which CSS run an outdated connector.
CONNECTOR_VERSION = version("vigie")
