"""The rules of the CME procedure: pure functions over frozen dataclasses, free of I/O."""
