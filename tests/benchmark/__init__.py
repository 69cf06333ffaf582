"""Benchmarks: speed and memory measured into JSON, never asserted by timed tests."""
