#!/usr/bin/env python3
"""Turn a full-suite results JSON into gradci's shipped durations file.

    gradci run --checks all --json full.json       # both upstream suites, one thread per worker
    python scripts/record_durations.py full.json   # writes gradci/data/durations-<device>.json

A results file of one suite (``--checks forward``) replaces that suite's durations and keeps the
other's.

Only tests that take at least --min seconds are kept: shorter ones are scheduled first and dealt
round-robin across shards, which costs nothing measurable.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

DATA = Path(__file__).resolve().parents[1] / "gradci" / "data"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("results", type=Path)
    parser.add_argument("--min", type=float, default=0.05, help="shortest duration kept, seconds")
    args = parser.parse_args()
    data = json.loads(args.results.read_text())
    run = data["run"]
    durations = {
        t["id"]: round(t["duration"], 3)
        for t in data["tests"]
        if t["outcome"] != "error" and t["duration"] >= args.min
    }
    out = DATA / f"durations-{run['device']}.json"
    # Keep what the file says of the suites these results did not run.
    sys.path.insert(0, str(DATA.parents[1]))
    from gradci.checks import BY_METHOD

    ran = {
        BY_METHOD[m].suite.name
        for m in BY_METHOD
        if any(t["check"] == BY_METHOD[m].name for t in data["tests"])
    }
    if out.is_file():
        kept = json.loads(out.read_text()).get("durations", {})
        for test_id, seconds in kept.items():
            method = next(
                (m for m in sorted(BY_METHOD, key=len, reverse=True) if test_id.startswith(m + "_")), None
            )
            if method is not None and BY_METHOD[method].suite.name not in ran:
                durations.setdefault(test_id, seconds)
    out.write_text(
        json.dumps(
            {
                "torch_version": run["torch_version"],
                "device_name": run.get("device_name"),
                "threads_per_worker": run.get("threads_per_worker"),
                "durations": dict(sorted(durations.items())),
            },
            indent=0,
        )
        + "\n"
    )
    print(f"{out}: {len(durations)} of {len(data['tests'])} tests, {sum(durations.values()):.0f} s in all")


if __name__ == "__main__":
    main()
