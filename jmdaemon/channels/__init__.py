"""Message channels: IRC and the onion (directory) channel."""
from .base import MessageChannel  # noqa: F401
