"""Views of the network: the status table (terminal, JSON) and Grafana dashboards."""
