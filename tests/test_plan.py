"""The plan: upstream test ids, selection patterns, shards and run order."""

from __future__ import annotations

import pytest

from gradci.catalog import OpEntry, load_upstream, select
from gradci.checks import DEFAULT_CHECKS, GROUPS
from gradci.durations import shipped_durations
from gradci.errors import ConfigError, SelectionError
from gradci.plan import PlannedTest, Shard, TestId, build_plan, partition, schedule


@pytest.fixture(scope="module")
def upstream() -> list[OpEntry]:
    return load_upstream()


@pytest.mark.parametrize(
    ("checks", "classes", "count"),
    [
        (DEFAULT_CHECKS, {"TestBwdGradientsCPU"}, 5000),
        (GROUPS["forward"], {"TestFwdGradientsCPU"}, 3000),
    ],
    ids=["backward", "forward"],
)
def test_plan_matches_torch_instantiation(
    upstream: list[OpEntry], checks: tuple[str, ...], classes: set[str], count: int
) -> None:
    """Every planned id is a method torch instantiates for the same ops, and the reverse."""
    from gradci.suite import build_test_classes, class_for

    plan = build_plan(upstream, device="cpu", checks=checks)
    built = build_test_classes("cpu", plan.ops_by_method)
    assert {cls.__name__ for cls in built.values()} == classes
    instantiated = {name for cls in set(built.values()) for name in dir(cls) if name.startswith(tuple(built))}
    assert set(plan.ids) == instantiated
    assert len(plan.ids) == len(set(plan.ids)) > count
    assert {t.classname for t in plan.tests} == classes
    assert all(class_for(built, test_id) is not None for test_id in plan.ids)


def test_ids_are_upstream_names(upstream: list[OpEntry]) -> None:
    plan = build_plan(select(upstream, ["div.trunc_rounding", "add"], []), device="cpu")
    assert "test_fn_grad_add_cpu_float64" in plan.ids
    assert "test_inplace_gradgrad_add_cpu_complex128" in plan.ids
    assert "test_fn_grad_div_trunc_rounding_cpu_float64" in plan.ids
    assert "test_fn_grad_div_trunc_rounding_cpu_complex128" not in plan.ids  # not a supported dtype
    assert plan.ids == sorted(plan.ids)  # unittest's (and pytest's) collection order


def test_cuda_plan_needs_no_gpu(upstream: list[OpEntry]) -> None:
    plan = build_plan(select(upstream, ["add"], []), device="cuda")
    assert "test_fn_grad_add_cuda_float64" in plan.ids
    assert {t.classname for t in plan.tests} == {"TestBwdGradientsCUDA"}


def test_checks_follow_the_reference_databases(upstream: list[OpEntry]) -> None:
    plan = build_plan(select(upstream, ["cond", "NumpyMulCustomOp"], []), device="cpu")
    checks = {(t.db, t.check) for t in plan.tests}
    assert ("hop_db", "grad") in checks and ("hop_db", "gradgrad") in checks
    assert not {c for db, c in checks if db == "hop_db"} & {
        "inplace-grad",
        "fail-gradgrad",
        "inplace-gradgrad",
    }
    assert ("custom_op_db", "fail-gradgrad") in checks
    assert ("custom_op_db", "inplace-gradgrad") not in checks


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ("div", {"div.no_rounding_mode", "div.trunc_rounding", "div.floor_rounding"}),
        ("div.trunc_rounding", {"div.trunc_rounding"}),
        ("div_trunc_rounding", {"div.trunc_rounding"}),  # as in the test id
        ("linalg.eig*", {"linalg.eig", "linalg.eigh", "linalg.eigvals", "linalg.eigvalsh"}),
    ],
)
def test_patterns(upstream: list[OpEntry], pattern: str, expected: set[str]) -> None:
    assert {e.full_name for e in select(upstream, [pattern], [])} == expected


def test_exclude(upstream: list[OpEntry]) -> None:
    chosen = {e.full_name for e in select(upstream, ["div"], ["*floor*"])}
    assert chosen == {"div.no_rounding_mode", "div.trunc_rounding"}


def test_pattern_selecting_nothing_is_an_error(upstream: list[OpEntry]) -> None:
    with pytest.raises(SelectionError, match="'lienar' matches no operator") as info:
        select(upstream, ["add", "lienar"], [])
    assert "nn.functional.linear" in str(info.value)  # a suggestion, found by the last name part


@pytest.mark.parametrize(
    "name",
    [
        "test_fn_grad_add_cpu_float64",
        "test_fn_gradgrad_div_trunc_rounding_cuda_complex128",
        "test_fn_fail_gradgrad_nn_functional_hardsigmoid_cpu_float64",
        "test_inplace_gradgrad__segment_reduce_lengths_cpu_float64",
    ],
)
def test_test_id_round_trip(name: str) -> None:
    assert TestId.parse(name).name == name
    assert TestId.parse(f"test_ops_gradients.py::TestBwdGradientsCPU::{name}").name == name


def test_test_id_parts() -> None:
    parsed = TestId.parse("test_fn_gradgrad_grad_thing_cpu_float64")
    assert (parsed.check, parsed.op, parsed.device, parsed.dtype) == (
        "gradgrad",
        "grad_thing",
        "cpu",
        "float64",
    )
    with pytest.raises(SelectionError):
        TestId.parse("test_something_else_cpu_float32")


@pytest.mark.parametrize("text", ["0/4", "5/4", "1/0", "a/b", "3"])
def test_bad_shard(text: str) -> None:
    with pytest.raises(ConfigError):
        Shard.parse(text)


def _tests(n: int) -> list[PlannedTest]:
    return [
        PlannedTest(f"test_fn_grad_op{i}_cpu_float64", "grad", f"op{i}", "op_db", "cpu", "float64")
        for i in range(n)
    ]


@pytest.mark.parametrize("count", [1, 2, 3, 4, 7, 16])
def test_shards_cover_every_test_exactly_once(upstream: list[OpEntry], count: int) -> None:
    plan = build_plan(upstream, device="cpu")
    shards = partition(plan.tests, count, shipped_durations("cpu"))
    ids = [t.id for shard in shards for t in shard]
    assert sorted(ids) == sorted(plan.ids)
    assert len(ids) == len(set(ids))


def test_shards_are_balanced_by_duration(upstream: list[OpEntry]) -> None:
    durations = shipped_durations("cpu")
    assert durations, "gradci ships upstream durations"
    plan = build_plan(upstream, device="cpu")
    loads = [sum(durations.get(t.id, 0.0) for t in shard) for shard in partition(plan.tests, 4, durations)]
    assert max(loads) <= 1.10 * (sum(loads) / len(loads))


def test_unknown_durations_are_dealt_round_robin() -> None:
    shards = partition(_tests(10), 3, {})
    assert [len(s) for s in shards] == [4, 3, 3]


def test_partition_is_deterministic() -> None:
    durations = {t.id: float(i % 5) for i, t in enumerate(_tests(40))}
    first = partition(_tests(40), 4, durations)
    second = partition(list(reversed(_tests(40))), 4, durations)
    assert [[t.id for t in s] for s in first] == [[t.id for t in s] for s in second]


def test_schedule_runs_unknown_then_longest_first() -> None:
    tests = _tests(4)
    durations = {tests[0].id: 1.0, tests[1].id: 5.0, tests[2].id: 3.0}
    order = [t.id for t in schedule(tests, durations)]
    assert order == [tests[3].id, tests[1].id, tests[2].id, tests[0].id]
