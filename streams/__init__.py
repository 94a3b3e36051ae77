"""Stream stage: validate → CSS check → consent gate → de-identify → harmonize.

The stages are plain functions and small classes (tested without a broker); the
Faust agents in ``streams/agents.py`` only decode, call them and hand results on.
"""
