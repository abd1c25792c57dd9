"""The scheduler's background loops, one module each."""
