"""jmcore."""
