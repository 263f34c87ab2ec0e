"""The option table (``gradci.options.Settings``): every setting is taken, with the same value, from
its flag on each command that lists it, from the config file and from GRADCI_*; a bad value from any
of them is one line naming that source (exit 2); each list of choices is written once."""

from __future__ import annotations

import json
import os
import re
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO

from gradci import cli, container
from gradci.checks import DEFAULT_CHECKS, DTYPE_NAMES
from gradci.options import (
    ALLOCATORS,
    BASELINE_MODES,
    BY_NAME,
    COMMANDS,
    COMMENT_MODES,
    DEVICES,
    FAIL_ON,
    OPTIONS,
    PROGRESS_MODES,
    Option,
    Settings,
    for_command,
)
from gradci.plan import Shard

# A value other than the default for each setting, as text (flag, GRADCI_*, config file), and what
# it means.
SAMPLES: dict[str, tuple[str, Any]] = {
    "ops": ("add,linalg.*", ("add", "linalg.*")),
    "exclude": ("sub", ("sub",)),
    "checks": ("grad,gradgrad", ("grad", "gradgrad")),
    "dtypes": ("float64", ("float64",)),
    "device": ("cuda", "cuda"),
    "op_modules": ("pkg.ops", ("pkg.ops",)),
    "spec": ("ops/mine.yml", Path("ops/mine.yml")),
    "upstream": ("false", False),
    "torch_source": ("../pytorch", Path("../pytorch")),
    "shard": ("2/4", Shard(2, 4)),
    "durations": ("old.json", Path("old.json")),
    "failed_from": ("old.json", Path("old.json")),
    "last_failed": ("true", True),
    "workers": ("3", 3),
    "threads": ("2", 2),
    "timeout": ("30.5", 30.5),
    "progress": ("plain", "plain"),
    "allocator": ("system", "system"),
    "reruns": ("0", 0),
    "max_worker_restart": ("2", 2),
    "baseline": ("base.json", Path("base.json")),
    "fail_on": ("any", "any"),
    "baseline_mode": ("rerun", "rerun"),
    "baseline_commits": ("5", 5),
    "baseline_setup": ("pip install -e .", "pip install -e ."),
    "artifact_name": ("results-{device}", "results-{device}"),
    "check_name": ("gradci (cuda)", "gradci (cuda)"),
    "comment_mode": ("off", "off"),
    "json": ("out/results.json", Path("out/results.json")),
    "junit": ("", None),  # '' turns an output off
    "image": ("example.org/gradci:dev", "example.org/gradci:dev"),
}
# A bad value as text; the others take any text, and are bad in a config file as a number.
BAD = {
    "checks": "grad,bogus",
    "dtypes": "float32",
    "device": "tpu",
    "upstream": "maybe",
    "last_failed": "maybe",
    "shard": "5/4",
    "workers": "0",
    "threads": "many",
    "timeout": "-1",
    "progress": "fancy",
    "allocator": " ",
    "reruns": "-1",
    "max_worker_restart": "x",
    "fail_on": "sometimes",
    "baseline_mode": "later",
    "baseline_commits": "0",
    "artifact_name": "a/b",
    "check_name": " ",
    "comment_mode": "never",
}
POSITIONALS = {
    "repro": ["test_fn_grad_add_cpu_float64"],
    "compare": ["base.json", "head.json"],
    "samples": ["abs"],
}
PAIRS = [(o, command) for o in OPTIONS for command in COMMANDS if o in for_command(command)]


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty project as the working directory, and no GRADCI_* from outside."""
    monkeypatch.chdir(tmp_path)
    for name in [n for n in os.environ if n.startswith("GRADCI_")]:
        monkeypatch.delenv(name)
    return Path.cwd()


def _flag_args(option: Option, text: str) -> list[str]:
    if option.negatable:
        return [option.flag if text == "true" else "--no-" + option.key]
    return [f"{option.flag}={text}"]  # = : a value may start with '-'


def _settings(command: str, *args: str) -> Settings:
    parsed = cli.build_parser().parse_args([command, *args, *POSITIONALS.get(command, [])])
    return cli.settings_from(parsed)


def test_the_table_covers_every_setting() -> None:
    assert [o.name for o in OPTIONS] == [f.name for f in fields(Settings)]
    assert set(SAMPLES) == set(BY_NAME), "a new setting needs a sample here"
    for option in OPTIONS:
        assert option.commands and set(option.commands) <= set(COMMANDS) - {"config"}, option.name
        assert option.help and option.group in (None, *[o.group for o in OPTIONS]), option.name
        # no setting holds a secret: gradci config prints them all (the token stays in GITHUB_TOKEN)
        assert not re.search(r"token|secret|password|credential", option.name), option.name


@pytest.mark.parametrize("option", OPTIONS, ids=lambda o: o.name)
def test_each_default_and_choice_reads_back(option: Option) -> None:
    """What --help and gradci config show of a value, the option's parser reads back to it."""
    assert option.parse(option.text(option.default), "x") == option.default
    assert getattr(Settings(), option.name) == option.default
    for choice in option.choices:
        assert option.parse(choice.upper(), "x") == choice
    text, value = SAMPLES[option.name]
    assert value != option.default and option.parse(text, "x") == value


def test_choices_are_the_ones_defined_once() -> None:
    assert BY_NAME["device"].choices == DEVICES
    assert BY_NAME["progress"].choices == PROGRESS_MODES
    assert BY_NAME["fail_on"].choices == FAIL_ON
    assert BY_NAME["baseline_mode"].choices == BASELINE_MODES
    assert BY_NAME["comment_mode"].choices == COMMENT_MODES
    assert BY_NAME["checks"].default == DEFAULT_CHECKS and BY_NAME["dtypes"].default == DTYPE_NAMES
    # the package spells each list of choices once (a tuple literal of its words, in any module)
    source = "\n".join(p.read_text() for p in (REPO / "gradci").rglob("*.py"))
    lists = (DEVICES, PROGRESS_MODES, ALLOCATORS, FAIL_ON, BASELINE_MODES, COMMENT_MODES)
    for words in (*lists, container.PULL_POLICIES, DTYPE_NAMES):
        literal = r"\(\s*" + r",\s*".join(re.escape(json.dumps(w)) for w in words) + r",?\s*\)"
        assert len(re.findall(literal, source)) == 1, words
    assert source.count('"gradci-results-{device}"') == 1


@pytest.mark.parametrize(("option", "command"), PAIRS, ids=lambda x: x if isinstance(x, str) else x.name)
def test_every_source_gives_the_same_value(
    project: Path, monkeypatch: pytest.MonkeyPatch, option: Option, command: str
) -> None:
    text, value = SAMPLES[option.name]
    assert getattr(_settings(command), option.name) == option.default
    assert getattr(_settings(command, *_flag_args(option, text)), option.name) == value

    with monkeypatch.context() as env:
        env.setenv(option.env, text)
        assert getattr(_settings(command), option.name) == value

    (project / ".gradci.yml").write_text(f"{option.key}: {json.dumps(text)}\n")
    assert getattr(_settings(command), option.name) == value
    (project / ".gradci.yml").unlink()
    (project / "pyproject.toml").write_text(f"[tool.gradci]\n{option.key} = {json.dumps(text)}\n")
    assert getattr(_settings(command), option.name) == value
    (project / "pyproject.toml").unlink()


def _one_line_error(capsys: pytest.CaptureFixture[str], command: str, *args: str) -> str:
    code = cli.main([command, *args, *POSITIONALS.get(command, [])])
    lines = capsys.readouterr().err.splitlines()
    assert code == 2 and len(lines) == 1, lines
    return lines[0]


@pytest.mark.parametrize(("option", "command"), PAIRS, ids=lambda x: x if isinstance(x, str) else x.name)
def test_a_bad_value_is_one_line_naming_its_source(
    project: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    option: Option,
    command: str,
) -> None:
    bad = BAD.get(option.name)
    if bad is not None:
        if not option.negatable:
            line = _one_line_error(capsys, command, f"{option.flag}={bad}")
            assert line.startswith(f"gradci: error: {option.flag}: "), line
        with monkeypatch.context() as env:
            env.setenv(option.env, bad)
            line = _one_line_error(capsys, command)
            assert line.startswith(f"gradci: error: {option.env}: "), line
    config = project / ".gradci.yml"
    config.write_text(f"{option.key}: {json.dumps(bad) if bad is not None else 5}\n")
    line = _one_line_error(capsys, command)
    assert line.startswith(f"gradci: error: {config}: {option.key}: "), line
    config.unlink()


@pytest.mark.parametrize("command", COMMANDS)
def test_help_shows_every_flag_with_its_choices_and_default(
    command: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "1000")  # argparse wraps lines at hyphens too
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args([command, "--help"])
    text = " ".join(capsys.readouterr().out.split())  # unwrapped
    for option in for_command(command):
        assert option.flag in text
        if option.choices:
            assert "{" + ",".join(option.choices) + "}" in text
        help = " ".join(option.help_text(command).split())
        assert help in text, help
        if option.default not in (None, ()) or option.shown_default:
            assert "(default: " in help
    assert ("--config FILE" in text) == (command != "container")
