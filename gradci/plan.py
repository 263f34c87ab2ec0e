"""The plan: ops x checks x dtypes -> upstream test ids, filtered, sharded and ordered.

Planning needs the OpInfo objects but never runs anything, so ``gradci list --device cuda`` works on a
machine without a GPU (handy for planning shards).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .catalog import OpEntry, custom_op_overload
from .checks import ADD, BY_METHOD, BY_NAME, CHECK_NAMES, DEFAULT_CHECKS, DTYPE_NAMES, GROUPS, expand
from .errors import ConfigError, SelectionError
from .locate import FORMULA_CHECKS, Derivative, Location

# Longest alternatives first so that test_fn_gradgrad is not read as test_fn_grad + "grad...".
_TEST_ID = re.compile(
    r"^(?P<method>" + "|".join(sorted(BY_METHOD, key=len, reverse=True)) + r")_(?P<op>.+)"
    r"_(?P<device>[a-z]+)_(?P<dtype>" + "|".join(DTYPE_NAMES) + r")$"
)


@dataclass(frozen=True)
class TestId:
    """The parts of an upstream test name such as ``test_fn_grad_div_trunc_rounding_cpu_float64``."""

    __test__ = False  # not a pytest test class

    check: str
    op: str  # the formatted op name: dots as underscores, variant appended
    device: str
    dtype: str

    @property
    def name(self) -> str:
        return f"{BY_NAME[self.check].method}_{self.op}_{self.device}_{self.dtype}"

    @classmethod
    def parse(cls, text: str) -> TestId:
        name = text.rsplit("::", 1)[-1].rsplit(".", 1)[-1]  # accept Class.test or file::Class::test
        match = _TEST_ID.match(name)
        if match is None:
            raise SelectionError(
                f"{text!r} is not a gradient test id",
                hint="expected e.g. test_fn_grad_add_cpu_float64; 'gradci list' prints them",
            )
        return cls(BY_METHOD[match["method"]].name, match["op"], match["device"], match["dtype"])


@dataclass(frozen=True)
class PlannedTest:
    id: str
    check: str
    op: str  # full op name: name or name.variant
    db: str
    device: str
    dtype: str
    origin: str | None = None
    location: Location | None = None
    derivative: Derivative | None = None  # fork mode, for a check of the backward formula

    @property
    def classname(self) -> str:
        return BY_NAME[self.check].suite.class_name(self.device)

    @property
    def method(self) -> str:
        return BY_NAME[self.check].method


@dataclass(frozen=True)
class Plan:
    device: str
    tests: tuple[PlannedTest, ...]
    # The OpInfo objects per test method, for building the test class in a worker.
    ops_by_method: Mapping[str, tuple[Any, ...]] = field(repr=False)

    @property
    def ids(self) -> list[str]:
        return [t.id for t in self.tests]

    def only(self, ids: Iterable[str]) -> Plan:
        keep = set(ids)
        return Plan(self.device, tuple(t for t in self.tests if t.id in keep), self.ops_by_method)


def parse_checks(values: Sequence[str]) -> tuple[str, ...]:
    """Check names, and suites for their checks (``forward``, ``all``), in canonical order;
    ``+name`` words add to the default checks (``+opcheck``: backward and opcheck)."""
    added = [v for v in values if v.startswith(ADD)]
    if added and len(added) != len(values):
        # "grad,+opcheck" could mean grad and opcheck or backward and opcheck: say which instead
        raise ConfigError(
            f"checks {','.join(values)!r} mix names with +names",
            hint=f"'{','.join(v.removeprefix(ADD) for v in values)}' runs exactly these; "
            f"'{','.join(ADD + v.removeprefix(ADD) for v in values)}' adds them to the default "
            f"({','.join(DEFAULT_CHECKS)})",
        )
    return _parse_choices("check", expand(values), CHECK_NAMES, also=tuple(GROUPS))


def parse_dtypes(values: Sequence[str]) -> tuple[str, ...]:
    return _parse_choices("dtype", values, DTYPE_NAMES)


def _parse_choices(
    kind: str, values: Sequence[str], allowed: Sequence[str], *, also: Sequence[str] = ()
) -> tuple[str, ...]:
    import difflib

    for value in values:
        if value not in allowed:
            close = difflib.get_close_matches(value, [*allowed, *also], n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"choose from {', '.join([*allowed, *also])}"
            raise ConfigError(f"unknown {kind} {value!r}", hint=hint)
    return tuple(v for v in allowed if v in values)  # canonical order, no duplicates


def build_plan(
    entries: Sequence[OpEntry],
    *,
    device: str,
    checks: Sequence[str] = DEFAULT_CHECKS,
    dtypes: Sequence[str] = DTYPE_NAMES,
) -> Plan:
    """Every test the reference suite would instantiate for these ops, in its collection order."""
    import torch

    wanted = {getattr(torch, name) for name in dtypes}
    tests: list[PlannedTest] = []
    ops_by_method: dict[str, list[Any]] = {}
    for check in CHECK_NAMES:
        if check not in checks:
            continue
        method = BY_NAME[check].method
        for entry in entries:
            if not BY_NAME[check].applies_to(entry.db):
                continue
            if BY_NAME[check].custom_ops_only and custom_op_overload(entry.op) is None:
                continue  # opcheck checks torch.library registrations: a plain function has none
            # Upstream: OpDTypes.supported intersected with {float64, complex128}.
            supported = set(entry.op.supported_dtypes(device)) & wanted
            if not supported:
                continue
            ops_by_method.setdefault(method, []).append(entry.op)
            for dtype in sorted(str(d).removeprefix("torch.") for d in supported):
                test_id = TestId(check, entry.formatted_name, device, dtype).name
                derivative = entry.derivative if check in FORMULA_CHECKS else None
                tests.append(
                    PlannedTest(
                        test_id,
                        check,
                        entry.full_name,
                        entry.db,
                        device,
                        dtype,
                        entry.origin,
                        entry.location,
                        derivative,
                    )
                )
    seen: set[str] = set()
    for test in tests:
        if test.id in seen:
            raise SelectionError(
                f"two operators produce the test id {test.id!r}",
                hint="give one of them a distinct name or variant_test_name",
            )
        seen.add(test.id)
    tests.sort(key=lambda t: t.id)  # unittest (and so pytest) collects a class's tests sorted by name
    return Plan(device, tuple(tests), {m: tuple(ops) for m, ops in ops_by_method.items()})


@dataclass(frozen=True)
class Shard:
    index: int  # 1-based, as written: --shard 2/4
    count: int

    @classmethod
    def parse(cls, text: str) -> Shard:
        match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
        if match is None:
            raise ConfigError(f"shard {text!r}: expected K/N, e.g. 1/4")
        index, count = int(match[1]), int(match[2])
        if count < 1 or not 1 <= index <= count:
            raise ConfigError(f"shard {text!r}: K must be between 1 and N")
        return cls(index, count)

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def partition(
    tests: Sequence[PlannedTest], count: int, durations: Mapping[str, float]
) -> list[list[PlannedTest]]:
    """Split tests into ``count`` shards that should take about equally long.

    Tests with a recorded duration go longest first onto the least loaded shard; tests without one
    are dealt round-robin. Deterministic for the same tests and durations, so every CI job computes
    the same partition and each test runs in exactly one shard.
    """
    shards: list[list[PlannedTest]] = [[] for _ in range(count)]
    loads = [0.0] * count
    known = sorted((t for t in tests if t.id in durations), key=lambda t: (-durations[t.id], t.id))
    for test in known:
        target = min(range(count), key=lambda i: (loads[i], i))
        shards[target].append(test)
        loads[target] += durations[test.id]
    unknown = sorted((t for t in tests if t.id not in durations), key=lambda t: t.id)
    start = min(range(count), key=lambda i: (loads[i], i))
    for offset, test in enumerate(unknown):
        shards[(start + offset) % count].append(test)
    for shard in shards:
        shard.sort(key=lambda t: t.id)
    return shards


def apply_shard(plan: Plan, shard: Shard | None, durations: Mapping[str, float]) -> Plan:
    if shard is None:
        return plan
    chosen = partition(plan.tests, shard.count, durations)[shard.index - 1]
    return plan.only(t.id for t in chosen)


def schedule(tests: Sequence[PlannedTest], durations: Mapping[str, float]) -> list[PlannedTest]:
    """Run order: longest first, so that no long test starts last and idles the other workers.

    Tests without a recorded duration may be long (a project's new op), so they go first too.
    """
    return sorted(tests, key=lambda t: (t.id in durations, -durations.get(t.id, 0.0), t.id))
