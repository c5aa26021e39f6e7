"""`feed bench`: the fan-out benchmark (see docs/performance.md)."""
