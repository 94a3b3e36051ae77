"""Contracts: Avro schemas, topic names and the Confluent wire format.

This package depends on nothing else of Vigie's: every other stage depends on it.
"""
