"""Pipecat services and processors, one per module."""
