"""Options: defaults < config file < GRADCI_* environment < flags, with errors that name the source."""

from __future__ import annotations

from pathlib import Path

import pytest

from gradci.errors import ConfigError
from gradci.options import Settings, resolve
from gradci.plan import Shard


def test_defaults(tmp_path: Path) -> None:
    settings = resolve({}, environ={}, directory=tmp_path)
    assert settings == Settings()
    assert settings.use_upstream is True
    assert settings.checks == ("grad", "inplace-grad", "gradgrad", "fail-gradgrad", "inplace-gradgrad")


def test_layers(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(
        '[tool.gradci]\nops = ["add", "mul"]\nworkers = 3\ntimeout = 30\nop-modules = "pkg.ops"\n'
    )
    settings = resolve({}, environ={}, directory=tmp_path)
    assert (settings.ops, settings.workers, settings.timeout) == (("add", "mul"), 3, 30.0)
    assert settings.op_modules == ("pkg.ops",) and settings.use_upstream is False

    settings = resolve({}, environ={"GRADCI_WORKERS": "5", "GRADCI_UPSTREAM": "true"}, directory=tmp_path)
    assert settings.workers == 5 and settings.use_upstream is True and settings.ops == ("add", "mul")

    settings = resolve({"workers": "7", "shard": "2/4"}, environ={"GRADCI_WORKERS": "5"}, directory=tmp_path)
    assert settings.workers == 7 and settings.shard == Shard(2, 4)


def test_yaml_config_and_empty_output_paths(tmp_path: Path) -> None:
    (tmp_path / ".gradci.yml").write_text("checks: [grad, gradgrad]\ndtypes: float64\njunit: ''\n")
    settings = resolve({}, environ={}, directory=tmp_path)
    assert settings.checks == ("grad", "gradgrad") and settings.dtypes == ("float64",)
    assert settings.junit is None and settings.json == Path("gradci-results.json")


@pytest.mark.parametrize(
    ("files", "environ", "flags", "message"),
    [
        (
            {"pyproject.toml": "[tool.gradci]\nworker = 2\n"},
            {},
            {},
            "unknown option 'worker' (did you mean 'workers'?)",
        ),
        ({"pyproject.toml": "[tool.gradci\n"}, {}, {}, "not valid TOML"),
        ({".gradci.yml": "ops: [add\n"}, {}, {}, ".gradci.yml:2: not valid YAML"),
        ({".gradci.yml": "- add\n"}, {}, {}, "expected a mapping"),
        ({".gradci.yml": "a: 1", "pyproject.toml": "[tool.gradci]\n"}, {}, {}, "configured in both"),
        ({}, {"GRADCI_WORKERS": "many"}, {}, "GRADCI_WORKERS: expected a positive integer"),
        (
            {},
            {},
            {"checks": "grad,gradgard"},
            "--checks: unknown check 'gradgard' (did you mean 'gradgrad'?)",
        ),
        ({}, {}, {"dtypes": "float32"}, "unknown dtype 'float32'"),
        ({}, {}, {"timeout": "-1"}, "--timeout: expected a positive number"),
        ({}, {}, {"shard": "5/4"}, "--shard: shard '5/4': K must be between 1 and N"),
        ({}, {"GRADCI_DEVICE": "tpu"}, {}, "GRADCI_DEVICE: expected one of cpu, cuda, auto"),
    ],
)
def test_bad_values(
    tmp_path: Path, files: dict[str, str], environ: dict[str, str], flags: dict[str, str], message: str
) -> None:
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    with pytest.raises(ConfigError) as info:
        resolve(flags, environ=environ, directory=tmp_path)
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "--ops", "nosuchop"], "gradci: error: op pattern 'nosuchop' matches no operator"),
        (["list", "--checks", "grad,bogus"], "gradci: error: --checks: unknown check 'bogus'"),
        (
            ["run", "--device", "cuda", "--ops", "add"],
            "gradci: error: --device cuda: torch.cuda.is_available() is False",
        ),
        (
            ["run", "--op-modules", "no_such_module_here"],
            "gradci: error: op module 'no_such_module_here': cannot import",
        ),
        (
            ["repro", "test_nothing_cpu_float64"],
            "gradci: error: 'test_nothing_cpu_float64' is not a gradient test id",
        ),
        (["run", "--config", "missing.yml"], "gradci: error: config file missing.yml does not exist"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(run_gradci, args: list[str], message: str) -> None:
    done = run_gradci(*args)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].startswith(message), done.stderr
    assert "Traceback" not in done.stderr


def test_yaml_off_is_off(tmp_path: Path) -> None:
    """PyYAML (YAML 1.1) reads an unquoted off as false: comment-mode: off still means off."""
    (tmp_path / ".gradci.yml").write_text("comment-mode: off\n")
    assert resolve({}, environ={}, directory=tmp_path).comment_mode == "off"
    (tmp_path / ".gradci.yml").write_text("fail-on: off\n")
    with pytest.raises(ConfigError, match="fail-on: expected one of new, any, none, got False"):
        resolve({}, environ={}, directory=tmp_path)
