"""Recorded test durations: longest-first scheduling and balanced shards.

gradci ships the durations of the upstream suite (``data/durations-<device>.json``, recorded with
``scripts/record_durations.py`` from a full run); a project's own ops get theirs from an earlier
results file (``--durations``).
"""

from __future__ import annotations

import json
from importlib import resources


def shipped_durations(device: str) -> dict[str, float]:
    resource = resources.files("gradci") / "data" / f"durations-{device}.json"
    try:
        data = json.loads(resource.read_text(encoding="utf-8"))
    except (FileNotFoundError, OSError, ValueError):
        return {}
    return {str(k): float(v) for k, v in data.get("durations", {}).items()}
