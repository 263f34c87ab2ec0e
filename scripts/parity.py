#!/usr/bin/env python3
"""Compare gradci with pytest on PyTorch's reference suite, test id by test id.

    python scripts/parity.py                      # the whole suite (about 20 minutes on 2 cores)
    python scripts/parity.py --ops 'add,linalg.*' # a selection
    python scripts/parity.py --suite forward      # test_ops_fwd_gradients.py ($GRADCI_REFERENCE_FWD)

Runs ``pytest test_ops_gradients.py`` (the reference file: $GRADCI_REFERENCE, default
../shared/reference/test_ops_gradients.py) and ``gradci run`` on the same ops, then reports ids
present on one side only and ids whose outcome (or skip reason) differs. Exit status 1 on any
difference.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "parity"))
import harness


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--ops", default="", help="comma-separated op patterns (default: all)")
    parser.add_argument("--exclude", default="", help="comma-separated op patterns to leave out")
    parser.add_argument("--workers", type=int, default=2, help="pytest -n and gradci --workers (default 2)")
    parser.add_argument("--out", type=Path, help="where to keep both sides' outputs (default: a temp dir)")
    parser.add_argument(
        "--suite",
        choices=("backward", "forward"),
        default="backward",
        help="backward: test_ops_gradients.py ($GRADCI_REFERENCE); forward: test_ops_fwd_gradients.py "
        "($GRADCI_REFERENCE_FWD, default gradci's own oracle of it, tests/parity/fwd_reference.py)",
    )
    args = parser.parse_args()
    reference = harness.reference_path(args.suite)
    if not reference.is_file():
        variable = "GRADCI_REFERENCE_FWD" if args.suite == "forward" else "GRADCI_REFERENCE"
        parser.error(f"reference suite not found at {reference}; set {variable}")
    out = args.out or Path(tempfile.mkdtemp(prefix="gradci-parity-"))
    split = lambda text: [p for p in text.replace(" ", ",").split(",") if p]  # noqa: E731
    report = harness.run_parity(
        split(args.ops), split(args.exclude), out, workers=args.workers, reference=reference, suite=args.suite
    )
    print(report.describe())
    print(f"outputs: {out}")
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
