"""Logging, protocol events and metrics drawn from the running pipelines."""
