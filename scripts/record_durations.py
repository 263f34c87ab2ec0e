#!/usr/bin/env python3
"""Turn a full-suite results JSON into gradci's shipped durations file.

    gradci run --json full.json            # the whole upstream suite, one thread per worker
    python scripts/record_durations.py full.json   # writes gradci/data/durations-<device>.json

Only tests that take at least --min seconds are kept: shorter ones are scheduled first and dealt
round-robin across shards, which costs nothing measurable.
"""

from __future__ import annotations

import argparse
import json
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
