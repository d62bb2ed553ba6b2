"""Where the project's shared material (the worked scenarios) sits: beside the repository, as in CI."""

from __future__ import annotations

from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[1]
SHARED_SCENARIOS = REPOSITORY.parent / "shared" / "scenarios"
