"""Chaos tests: the pipeline under injected faults and killed processes (real stack)."""
