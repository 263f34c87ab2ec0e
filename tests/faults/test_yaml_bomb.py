"""YAML that would make gradci hang or run out of memory: alias bombs ("billion laughs"), recursive
aliases, deep nesting, huge or non-UTF-8 files, in the spec (gradci-ops.yml) and in the config
(.gradci.yml, --config). Each ends at once with one line naming file:line and exit 2; anchors and
aliases within the limits keep working."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import FIXTURES

from gradci import safeyaml

# 9 levels of 9 aliases: 9^9 = 387 million numbers once expanded, in 0.6 KB, where the spec's
# validation walks them (a sample's values). Before the limit: minutes and gigabytes of silence.
SPEC_BOMB = (
    "ops:\n  - name: bomb\n    op: gradci_specops:slightly_off\n    samples:\n"
    "      - input: {values: &a [1, 1, 1, 1, 1, 1, 1, 1, 1]}\n"
    + "".join(
        f"      - input: {{values: &{chr(97 + i)} [{', '.join([f'*{chr(96 + i)}'] * 9)}]}}\n"
        for i in range(1, 9)
    )
)
# The same in a config value, which the error message about it printed whole (its repr): also a hang.
CONFIG_BOMB = "timeout:\n  a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
    f"  {chr(97 + i)}: &{chr(97 + i)} [{', '.join([f'*{chr(96 + i)}'] * 9)}]\n" for i in range(1, 9)
)
# Measures the child's time and peak memory (RUSAGE_CHILDREN of a fresh process: only that child).
MEASURE = (
    "import resource, subprocess, sys, time\n"
    "start = time.monotonic()\n"
    "done = subprocess.run(sys.argv[1:], capture_output=True, text=True, timeout=120)\n"
    "print(time.monotonic() - start, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
    "sys.stdout.write(done.stderr)\n"
    "sys.exit(done.returncode)\n"
)


def measured(cwd: Path, *args: str) -> tuple[int, float, int, str]:
    """``gradci ARGS`` in a subprocess: exit code, seconds, peak RSS in MiB, stderr."""
    env = {k: v for k, v in os.environ.items() if k != "GITHUB_ACTIONS"}
    env["PYTHONPATH"] = str(FIXTURES)
    proc = subprocess.run(
        [sys.executable, "-c", MEASURE, sys.executable, "-m", "gradci", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    first, _, stderr = proc.stdout.partition("\n")
    seconds, rss_kib = first.split()
    return proc.returncode, float(seconds), int(rss_kib) // 1024, stderr


def test_the_bombs_are_small_and_would_be_huge() -> None:
    assert len(SPEC_BOMB) < 700 and len(CONFIG_BOMB) < 500
    assert SPEC_BOMB.count("*") == CONFIG_BOMB.count("*") == 72


@pytest.mark.parametrize("command", ["list", "ops", "run"])
def test_alias_bomb_in_the_spec_is_refused_at_once(tmp_path: Path, command: str) -> None:
    (tmp_path / "gradci-ops.yml").write_text(SPEC_BOMB)
    code, seconds, rss, stderr = measured(tmp_path, command)
    # before: no end in sight (still silent after 30 s here; 150 s and 2.9 GB reported)
    assert code == 2, stderr
    assert stderr == (
        "gradci: error: gradci-ops.yml:10: alias *e expands past 100,000 YAML nodes (aliases counted expanded)\n"
    )
    assert seconds < 10 and rss < 300, (seconds, rss)


@pytest.mark.parametrize("where", [".gradci.yml", "--config"])
def test_alias_bomb_in_the_config_is_refused_at_once(tmp_path: Path, where: str) -> None:
    if where == "--config":
        (tmp_path / "cfg.yaml").write_text(CONFIG_BOMB)
        code, seconds, rss, stderr = measured(tmp_path, "list", "--config", "cfg.yaml")
        name = "cfg.yaml"
    else:
        (tmp_path / ".gradci.yml").write_text(CONFIG_BOMB)
        code, seconds, rss, stderr = measured(tmp_path, "list")
        name = str(tmp_path / ".gradci.yml")
    assert code == 2, stderr
    assert (
        stderr
        == f"gradci: error: {name}:7: alias *e expands past 100,000 YAML nodes (aliases counted expanded)\n"
    )
    assert seconds < 10 and rss < 300, (seconds, rss)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("ops: &a [*a]\n", "gradci-ops.yml:1: alias *a is inside the node it names"),
        (
            "ops:\n  - &x\n    op: m:f\n    samples: [*x]\n",
            "gradci-ops.yml:4: alias *x is inside the node it names",
        ),
        (
            "ops: " + "[" * 101 + "]" * 101 + "\n",
            "gradci-ops.yml:1: the document nests deeper than 100 levels",
        ),
        (
            "a: &a " + "[" * 60 + "]" * 60 + "\nops: " + "[" * 50 + "*a" + "]" * 50 + "\n",
            "gradci-ops.yml:2: alias *a nests deeper than 100 levels",
        ),
        ("ops: [*nothing]\n", "gradci-ops.yml:1: not valid YAML: found undefined alias 'nothing'"),
        ("ops: [" + "1, " * 100_000 + "]\n", "gradci-ops.yml:1: the document grows past 100,000 YAML nodes"),
    ],
)
def test_recursive_deep_and_huge_documents(run_gradci, tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "gradci-ops.yml").write_text(text)
    done = run_gradci("list")
    assert done.returncode == 2
    assert done.stderr.startswith(f"gradci: error: {message}") and done.stderr.count("\n") == 1, done.stderr


def test_file_size_and_encoding(run_gradci, tmp_path: Path) -> None:
    (tmp_path / "gradci-ops.yml").write_text("# padding\n" * (safeyaml.MAX_BYTES // 10 + 1))
    done = run_gradci("list")
    assert (done.returncode, done.stderr) == (
        2,
        "gradci: error: gradci-ops.yml: larger than 1,024 KiB, the most gradci reads of a YAML file\n",
    )
    (tmp_path / "gradci-ops.yml").unlink()
    (tmp_path / ".gradci.yml").write_bytes(b"workers: 2\nexclude: caf\xe9\n")
    done = run_gradci("list")
    assert (done.returncode, done.stderr) == (
        2,
        f"gradci: error: {tmp_path}/.gradci.yml:2: not UTF-8 text (byte 24)\n",
    )
    (tmp_path / ".gradci.yml").unlink()
    (tmp_path / "ops.d").mkdir()
    done = run_gradci("list", "--spec", "ops.d")
    assert (done.returncode, done.stderr) == (
        2,
        "gradci: error: cannot read spec file ops.d: Is a directory\n",
    )


def test_anchors_and_aliases_within_limits_still_load(run_gradci, tmp_path: Path) -> None:
    """Specs share samples with anchors; configs can share lists: both load as before."""
    (tmp_path / "gradci-ops.yml").write_text(
        "ops:\n"
        "  - name: spec.one\n"
        "    op: gradci_specops:slightly_off\n"
        "    samples: &vector [{input: {shape: [4]}}, {input: {shape: [2, 3]}}]\n"
        "  - name: spec.two\n"
        "    op: gradci_specops:nondeterministic\n"
        "    samples: *vector\n"
    )
    (tmp_path / ".gradci.yml").write_text("checks: &checks [grad, gradgrad]\ndtypes: [float64]\n")
    done = run_gradci("list", "--no-upstream")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [
        "test_fn_grad_spec_one_cpu_float64",
        "test_fn_grad_spec_two_cpu_float64",
        "test_fn_gradgrad_spec_one_cpu_float64",
        "test_fn_gradgrad_spec_two_cpu_float64",
    ]


def test_limits_count_expanded_nodes_linearly(tmp_path: Path) -> None:
    """Just under the limit loads; one more alias is refused; either way in linear time."""
    from gradci.errors import ConfigError

    per = 1000  # nodes of the shared list: 1 list + 999 scalars
    aliases = safeyaml.MAX_NODES // per - 2
    text = "base: &b [" + ", ".join(["1"] * (per - 1)) + "]\nall: [" + ", ".join(["*b"] * aliases) + "]\n"
    path = tmp_path / "near.yml"
    path.write_text(text)
    start = time.monotonic()
    data = safeyaml.load(path, ConfigError, "config file")
    assert len(data["all"]) == aliases and time.monotonic() - start < 5
    path.write_text(text.replace("*b]", "*b, *b, *b]"))
    with pytest.raises(ConfigError, match=r"near.yml:2: alias \*b expands past 100,000"):
        safeyaml.load(path, ConfigError, "config file")
