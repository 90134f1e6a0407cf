"""What the user sees: ``model`` (GUI-agnostic, testable without Qt) and ``qt/`` (the tab)."""
