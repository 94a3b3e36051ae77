"""The embedded runtime: Tansu broker, registry stand-in, Faust worker and chDB, in one command.

This package is the composition root: it may import every stage.
"""
