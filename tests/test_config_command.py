"""``gradci config``: the resolved settings, one per line as in .gradci.yml, each with where it came
from; and the one line of ``gradci run`` naming the settings that are not the defaults."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from conftest import FIXTURES

from gradci import cli
from gradci.options import BY_NAME, OPTIONS, Settings, resolve


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "project").mkdir()
    monkeypatch.chdir(tmp_path / "project")
    for name in [n for n in os.environ if n.startswith("GRADCI_")]:
        monkeypatch.delenv(name)
    return Path.cwd()


def _config(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[str, Settings]:
    assert cli.main(["config", *args]) == 0
    out = capsys.readouterr().out
    return out, cli.settings_from(cli.build_parser().parse_args(["config", *args]))


def _lines(out: str) -> dict[str, tuple[str, str]]:
    """key -> (value, source) of each setting line."""
    found = {}
    for line in out.splitlines():
        if not line.startswith("#"):
            entry, _, source = line.partition("  # ")
            key, _, value = entry.partition(": ")
            found[key] = (value.strip(), source)
    return found


def test_each_setting_with_its_source(
    project: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (project / "pyproject.toml").write_text('[tool.gradci]\nops = ["add", "mul"]\nworkers = 2\n')
    (project / "gradci-ops.yml").write_text("ops: []\n")
    monkeypatch.setenv("GRADCI_FAIL_ON", "any")
    monkeypatch.setenv("GRADCI_WORKERS", "4")
    out, _ = _config(capsys, "--workers", "3", "--comment-mode", "off")
    lines = _lines(out)
    assert list(lines) == [o.key for o in OPTIONS]  # every setting, once, in the table's order
    pyproject = project / "pyproject.toml"
    assert lines["ops"] == ("add,mul", f"{pyproject}: ops")
    assert lines["workers"] == ("3", "--workers")  # the flag wins over GRADCI_ and the file
    assert lines["fail-on"] == ("any", "GRADCI_FAIL_ON")
    assert lines["comment-mode"] == ('"off"', "--comment-mode")  # quoted: YAML 1.1 reads off as false
    assert lines["spec"] == ("gradci-ops.yml", "found in the project")
    assert lines["timeout"] == ("300", "default")
    assert lines["checks"] == (",".join(BY_NAME["checks"].default), "default")
    assert f"# config file: {pyproject}" in out.splitlines()[:2]


def test_the_output_is_a_config_file_with_the_same_settings(
    project: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Values YAML would read as something else (off, yes, a date, a number, an alias, a comment)
    come out quoted: the output, as .gradci.yml, gives the same settings."""
    out, settings = _config(
        capsys,
        "--ops=*add,sub",
        "--comment-mode=off",
        "--check-name=yes",
        "--artifact-name=2024-01-01-{device}",
        "--baseline-setup=pip install -e . # not a comment: really",
        "--json=true",
        "--junit=",
        "--image=1.5",
        "--spec=ops.yml",
        "--shard=1/2",
        "--no-upstream",
        "--timeout=0.5",
        "--max-worker-restart=0",
    )
    assert settings.ops == ("*add", "sub") and settings.junit is None and settings.upstream is False
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / ".gradci.yml").write_text(out)
    assert resolve({}, environ={}, directory=tmp_path / "elsewhere") == settings
    # and the defaults, as they are shown, are the defaults
    (tmp_path / "defaults").mkdir()
    out, settings = _config(capsys)
    assert settings == Settings()
    (tmp_path / "defaults" / ".gradci.yml").write_text(out)
    assert resolve({}, environ={}, directory=tmp_path / "defaults") == Settings()


def test_no_token_and_no_workflow_command(
    project: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("GITHUB_TOKEN", "GH_TOKEN", "GRADCI_TOKEN", "INPUT_TOKEN"):
        monkeypatch.setenv(name, "ghs_sEcReT0123456789")
    out, _ = _config(capsys, "--baseline-setup", "true\n::error::injected", "--check-name", "##[error]x")
    assert "sEcReT" not in out
    assert not [line for line in out.splitlines() if line.lstrip().startswith("::") or "##[" in line]


def test_a_bad_value_and_a_missing_config_file(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["config", "--config", "nothere.yml"]) == 2
    assert capsys.readouterr().err.splitlines() == ["gradci: error: config file nothere.yml does not exist"]
    (project / "other.yml").write_text("reruns: 2\n")
    out, settings = _config(capsys, "--config", "other.yml")
    assert settings.reruns == 2 and _lines(out)["reruns"] == ("2", "other.yml: reruns")


def test_run_names_the_settings_that_are_not_defaults(run_gradci) -> None:
    """One line after the first, before the log group of the run; the defaults are not listed."""
    done = run_gradci(
        "run",
        "--op-modules=gradci_testops",
        "--ops=testops.good_scale",
        "--checks=grad",
        "--dtypes=float64",
        "--workers=1",
        "--json=gradci-results.json",  # the default value: not listed, wherever it came from
        env={"GITHUB_ACTIONS": "true", "GRADCI_FAIL_ON": "any", "PYTHONPATH": str(FIXTURES)},
    )
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    assert lines[0].startswith("gradci ") and lines[2].startswith("::group::gradci: running 1 test")
    assert lines[1] == (
        "settings other than the defaults: ops=testops.good_scale (--ops), checks=grad (--checks), "
        "dtypes=float64 (--dtypes), op-modules=gradci_testops (--op-modules), workers=1 (--workers), "
        "fail-on=any (GRADCI_FAIL_ON)"
    )
