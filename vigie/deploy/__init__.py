"""Production deployment helpers: credentials, Kafka ACLs and warehouse users generated from
the organization list (``vigie deploy render``)."""
