"""Results built in memory, for tests of compare, merge and report (no gradcheck needed there)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from gradci.results import Mismatch, Outcome, Results, RunInfo, TestResult

METHODS = {
    "grad": "test_fn_grad",
    "inplace-grad": "test_inplace_grad",
    "gradgrad": "test_fn_gradgrad",
    "fail-gradgrad": "test_fn_fail_gradgrad",
    "inplace-gradgrad": "test_inplace_gradgrad",
}
FORWARD_METHODS = {
    "fwgrad-bwgrad": "test_fn_fwgrad_bwgrad",
    "forward-ad": "test_forward_mode_AD",
    "inplace-forward-ad": "test_inplace_forward_mode_AD",
}


def run_info(**changes: Any) -> RunInfo:
    info = RunInfo(
        gradci_version="0.1.0",
        torch_version="2.13.0+cpu",
        torch_git_version="0123456789abcdef",
        python="3.11.9",
        platform="Linux",
        device="cpu",
        device_name="Some CPU",
        cuda_version=None,
        started_at="2026-01-01T10:00:00+00:00",
        finished_at="2026-01-01T10:06:12+00:00",
        duration=372.0,
        workers=2,
        threads_per_worker=1,
        selection={"ops": [], "checks": list(METHODS), "dtypes": ["float64", "complex128"], "shard": None},
        git_sha="a" * 40,
    )
    for key, value in changes.items():
        setattr(info, key, value)
    return info


def tid(op: str, check: str = "grad", dtype: str = "float64", device: str = "cpu") -> str:
    return f"{(METHODS | FORWARD_METHODS)[check]}_{op.replace('.', '_')}_{device}_{dtype}"


def result(
    op: str,
    outcome: Outcome | str = Outcome.PASSED,
    *,
    check: str = "grad",
    dtype: str = "float64",
    device: str = "cpu",
    message: str | None = None,
    flaky: bool = False,
    fast_mode_only: bool = False,
    duration: float = 0.5,
) -> TestResult:
    outcome = Outcome(outcome)
    name = tid(op, check, dtype, device)
    test = TestResult(name, op, check, device, dtype, outcome, duration, db="user")
    if outcome in (Outcome.FAILED, Outcome.ERROR) or fast_mode_only:
        test.message = message or "GradcheckError: Jacobian mismatch for output 0 with respect to input 0,"
        test.sample_index = 1
        test.sample = "SampleInput(input=Tensor[size=(3,), device='cpu', dtype=torch.float64])"
        if outcome is Outcome.FAILED:
            test.mismatch = Mismatch(
                0, 0, "input", 1.5, 0.5, [1, 1], "2", "3.5", "fast", 1.5, fast_mode_only=fast_mode_only
            )
        test.repro = f"gradci repro {name} --sample 1 --op-modules mylib.ops"
    elif message is not None:
        test.message = message
    if flaky:
        test.attempts = [
            {
                "outcome": "failed",
                "duration": duration,
                "message": "GradcheckError: Jacobian mismatch (first try)",
                "sample_index": 0,
            }
        ]
    return test


def results(tests: Iterable[TestResult], **run: Any) -> Results:
    return Results(run_info(**run), list(tests))


def save(path: Path, tests: Iterable[TestResult], **run: Any) -> Path:
    results(tests, **run).save(path)
    return path


def large(n_ops: int = 500, failing: int = 500, *, seed: int = 0, failing_ops: int = 60) -> Results:
    """n_ops x 5 checks x 2 dtypes tests (5,000 for 500 ops); ``failing`` of them failing, spread
    over ``failing_ops`` ops, deterministically."""
    import random

    rnd = random.Random(seed)
    tests = [
        result(f"op{i:03d}", check=check, dtype=dtype, duration=rnd.random())
        for i in range(n_ops)
        for check in METHODS
        for dtype in ("float64", "complex128")
    ]
    candidates = [i for i, t in enumerate(tests) if int(t.op[2:]) < failing_ops]
    for i in rnd.sample(candidates, failing):
        tests[i] = result(tests[i].op, Outcome.FAILED, check=tests[i].check, dtype=tests[i].dtype)
    return results(tests)
