"""jmdaemon."""
