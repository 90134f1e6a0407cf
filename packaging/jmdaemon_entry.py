"""Entry point frozen into the jmdaemon binary (same as ``python -m jmdaemon``)."""
import sys

from jmdaemon.cli import main

if __name__ == "__main__":
    sys.exit(main())
