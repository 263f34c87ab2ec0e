"""The action, the workflows and the Dockerfile are linted (actionlint, zizmor, hadolint, shellcheck)
and kept in step with gradci's options and the docs (docs/action.md, docs/container.md)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from action_runner import evaluate
from conftest import REPO

from gradci.options import BY_NAME, OPTIONS

WORKFLOWS = sorted((REPO / ".github" / "workflows").glob("*.yml"))
EXAMPLES = sorted((REPO / "examples" / "workflows").glob("*.yml"))
ACTION = REPO / "action.yml"
SCRIPTS = [
    *sorted((REPO / "action").glob("*.sh")),
    REPO / ".ci" / "run",
    REPO / ".ci" / "slow",
    REPO / "tests" / "container" / "prepare.sh",
]
BIN = Path(sys.executable).parent
# Settings a workflow has no use for (progress, image), marked in the option table.
NOT_INPUTS = {o.name for o in OPTIONS if not o.action_input}
# Inputs the action always sets, to its own defaults (action/settings.sh).
ALWAYS_SET = {"json", "junit"}


def _tool(name: str) -> str:
    found = shutil.which(name, path=str(BIN)) or shutil.which(name)
    if found is None:
        pytest.skip(f"{name} is not installed (pip install -e '.[dev]')")
    return found


def _load(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def _action() -> dict[str, Any]:
    return _load(ACTION)


def _steps(document: dict[str, Any]) -> list[dict[str, Any]]:
    if "runs" in document:
        return list(document["runs"]["steps"])
    return [step for job in document["jobs"].values() for step in job.get("steps", [])]


def test_files_exist() -> None:
    assert {p.name for p in WORKFLOWS} == {"ci.yml", "release.yml"}
    assert {p.name for p in EXAMPLES} == {
        "pr-check.yml",
        "baseline-on-main.yml",
        "sharded.yml",
        "cuda-self-hosted.yml",
        "fork-safe-pull-request.yml",
        "fork-safe-publish.yml",
    }


def test_actionlint() -> None:
    shellcheck = _tool("shellcheck")  # actionlint checks run: scripts with it
    done = subprocess.run(
        [_tool("actionlint"), "-shellcheck", shellcheck, *map(str, WORKFLOWS + EXAMPLES)],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_zizmor_finds_nothing_medium_or_high() -> None:
    done = subprocess.run(
        [_tool("zizmor"), "--offline", "--format", "json", "--min-severity", "medium"]
        + [str(p.relative_to(REPO)) for p in [*WORKFLOWS, *EXAMPLES, ACTION]],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout[-5000:] + done.stderr[-3000:]
    assert json.loads(done.stdout) == []


def test_the_only_zizmor_ignore_is_the_workflow_run_publisher() -> None:
    ignores = {
        path.relative_to(REPO).as_posix(): re.findall(r"zizmor: ignore\[([^\]]+)\]", path.read_text())
        for path in [*WORKFLOWS, *EXAMPLES, ACTION]
    }
    assert {k: v for k, v in ignores.items() if v} == {
        "examples/workflows/fork-safe-publish.yml": ["dangerous-triggers"]
    }


def test_hadolint() -> None:
    done = subprocess.run([_tool("hadolint"), "Dockerfile"], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_shellcheck() -> None:
    done = subprocess.run([_tool("shellcheck"), *map(str, SCRIPTS)], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("path", [*WORKFLOWS, *EXAMPLES, ACTION], ids=lambda p: p.name)
def test_no_expression_inside_a_script(path: Path) -> None:
    """Values reach scripts through env:, so no input or event text is ever parsed as shell."""
    for step in _steps(_load(path)):
        assert "${{" not in step.get("run", ""), f"{path.name}: {step.get('name')}"


@pytest.mark.parametrize("path", [*WORKFLOWS, *EXAMPLES, ACTION], ids=lambda p: p.name)
def test_actions_are_pinned_by_commit(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    for step in _steps(_load(path)):
        uses = step.get("uses")
        if uses is None or uses == "./":
            continue
        if path in EXAMPLES and uses == "gradci/gradci@v1":
            continue  # users follow gradci's major tag (.github/zizmor.yml)
        assert re.fullmatch(r"[\w.-]+/[\w./-]+@[0-9a-f]{40}", uses), uses
        assert re.search(re.escape(uses) + r" # v\d+\.\d+\.\d+\n", text), f"{uses}: no # vX.Y.Z comment"
    # one version of each action everywhere
    everywhere = re.findall(r"uses: ([\w.-]+/[\w.-]+)@([0-9a-f]{40})", text)
    assert len(dict(everywhere)) == len(set(everywhere))


def test_examples_never_run_untrusted_code_with_a_write_token() -> None:
    for path in EXAMPLES:
        document = _load(path)
        triggers = document.get(True, document.get("on"))  # YAML 1.1 reads `on` as True
        assert "pull_request_target" not in triggers, path.name
        for step in _steps(document):
            if str(step.get("uses", "")).startswith("actions/checkout@"):
                assert step["with"]["persist-credentials"] is False, path.name
        if "workflow_run" in triggers:
            steps = _steps(document)
            assert not [s for s in steps if "checkout" in str(s.get("uses", "")) or "run" in s], path.name
            [gradci] = [s for s in steps if s.get("uses") == "gradci/gradci@v1"]
            assert gradci["with"]["command"] == "publish"


def test_release_pushes_both_variants_with_version_and_major_tags() -> None:
    release = _load(REPO / ".github" / "workflows" / "release.yml")
    assert release["permissions"] == {}
    image = release["jobs"]["image"]
    assert image["strategy"]["matrix"]["variant"] == ["cpu", "cuda"]
    assert image["permissions"] == {"contents": "read", "packages": "write"}
    assert release["jobs"]["major-tag"]["permissions"] == {"contents": "write"}
    script = next(s["run"] for s in image["steps"] if s.get("id") == "tags")
    # the tags the script makes for v1.2.3 and v1.2.3-rc1, run for real
    for tag, variant, expected in [
        ("v1.2.3", "cpu", ["ghcr.io/org/gradci:1.2.3", "ghcr.io/org/gradci:v1"]),
        ("v1.2.3", "cuda", ["ghcr.io/org/gradci:1.2.3-cuda", "ghcr.io/org/gradci:v1-cuda"]),
        ("v1.2.3-rc1", "cpu", ["ghcr.io/org/gradci:1.2.3-rc1"]),
    ]:
        assert _release_tags(script, tag, variant) == expected


def _release_tags(script: str, tag: str, variant: str) -> list[str]:
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        (root / "gradci").mkdir(parents=True)
        (root / "gradci" / "__init__.py").write_text(f'__version__ = "{tag[1:]}"\n')
        output = root / "output"
        done = subprocess.run(
            ["bash", "-eo", "pipefail", "-c", script],
            cwd=root,
            env={"TAG": tag, "REPOSITORY": "Org/gradci", "VARIANT": variant, "GITHUB_OUTPUT": str(output)},
            capture_output=True,
            text=True,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        text = output.read_text()
    return text.split("tags<<EOF\n", 1)[1].split("EOF\n", 1)[0].split()


# --- action.yml in step with gradci -------------------------------------------------------------


def _gradci_steps() -> list[dict[str, Any]]:
    """The steps that source action/settings.sh: run, publish, name the artifact."""
    return [s for s in _action()["runs"]["steps"] if s.get("id") in ("gradci", "publish", "artifact")]


def _exported_settings() -> list[str]:
    """The settings action/settings.sh turns from IN_X into GRADCI_X."""
    script = (REPO / "action" / "settings.sh").read_text()
    match = re.search(r"for name in (.*?); do", script, re.S)
    assert match is not None
    return match.group(1).replace("\\", " ").split()


def test_every_option_is_an_input_and_reaches_gradci() -> None:
    exported = _exported_settings()
    inputs = _action()["inputs"]
    steps = _gradci_steps()
    assert len(steps) == 3
    # settings.sh exports real settings only, each from its input, in some step
    assert {name.lower() for name in exported} <= set(BY_NAME) - NOT_INPUTS - ALWAYS_SET
    for name in exported:
        key = name.lower().replace("_", "-")
        given = [s["env"][f"IN_{name}"] for s in steps if f"IN_{name}" in s["env"]]
        assert given and set(given) == {f"${{{{ inputs.{key} }}}}"}, name
        assert inputs[key]["default"] == "", f"{key}: an empty default leaves the project's config in force"
    # every setting a workflow can use is an input; the others deliberately are not
    missing = set(BY_NAME) - NOT_INPUTS - ALWAYS_SET - {n.lower() for n in exported}
    assert not missing, f"options without an action input: {sorted(missing)}"
    for name in NOT_INPUTS:
        assert BY_NAME[name].key not in inputs, f"{name} is marked as no action input"
    # the settings the action always sets: from their inputs, else the table's defaults
    script = (REPO / "action" / "settings.sh").read_text()
    for name in ALWAYS_SET:
        option = BY_NAME[name]
        assert option.key in inputs
        assert f"{option.env}=${{IN_{name.upper()}:-{option.default}}}" in script


def test_every_input_is_used_and_every_expression_is_supported() -> None:
    action = _action()
    text = ACTION.read_text()
    for name in action["inputs"]:
        assert re.search(rf"inputs\.{re.escape(name)}(?![\w-])", text), f"input {name} is never used"
    contexts = {
        "inputs": {name: "" for name in action["inputs"]},
        "steps": {},
        "github": {},
        "runner": {},
    }
    for expression in re.findall(r"\$\{\{(.*?)\}\}", text):
        evaluate(expression, contexts)  # raises on what tests/action_runner.py cannot run


def test_the_token_reaches_the_publish_step_only() -> None:
    """The steps before it run the project's code, whose processes can read every ancestor's
    initial environment (/proc/PID/environ): no token in theirs (tests/faults/test_token_leak.py)."""
    for step in _action()["runs"]["steps"]:
        given = [k for k, v in (step.get("env") or {}).items() if "inputs.token" in str(v)]
        assert given == (["GITHUB_TOKEN"] if step.get("id") == "publish" else []), step.get("name")
        assert "inputs.token" not in json.dumps(step.get("with") or {}), step.get("name")
    publish = next(s for s in _action()["runs"]["steps"] if s.get("id") == "publish")
    assert publish["run"] == '"$GITHUB_ACTION_PATH/action/publish.sh"'


def test_docs_document_every_input_output_and_build_argument() -> None:
    action_page = (REPO / "docs" / "action.md").read_text()
    action = _action()
    for kind in ("inputs", "outputs"):
        for name in action[kind]:
            assert f"| `{name}` |" in action_page, f"docs/action.md lacks the action {kind[:-1]} {name}"
    container_page = (REPO / "docs" / "container.md").read_text()
    build_args = re.findall(r"^ARG (\w+)", (REPO / "Dockerfile").read_text(), re.M)
    assert build_args
    for arg in build_args:
        assert f"| `{arg}` |" in container_page, f"docs/container.md lacks the build argument {arg}"


@pytest.mark.parametrize(
    ("config", "env", "shard", "expected"),
    [
        (None, {}, None, "gradci-results-cpu"),
        ("artifact-name: nightly-{device}\n", {}, None, "nightly-cpu"),
        (
            "artifact-name: nightly-{device}\n",
            {"IN_ARTIFACT_NAME": "from-input-{device}"},
            None,
            "from-input-cpu",
        ),
        (None, {}, "2/3", "gradci-results-cpu-shard-2-of-3"),
    ],
    ids=["default", "config file", "input wins", "shard"],
)
def test_the_artifact_step_names_it_as_publish_looks_for_it(
    tmp_path: Path, config: str | None, env: dict[str, str], shard: str | None, expected: str
) -> None:
    """action/artifact.sh, run as the runner runs it: the name comes from gradci's own settings
    (input, GRADCI_*, the project's config file), the device and shard from the results."""
    from results_factory import results

    from gradci.results import dumps

    if config is not None:
        (tmp_path / ".gradci.yml").write_text(config)
    selection = {"shard": shard} if shard else {}
    (tmp_path / "gradci-results.json").write_text(dumps(results([], selection=selection).to_json()))
    output = tmp_path / "output"
    done = subprocess.run(
        ["bash", str(REPO / "action" / "artifact.sh")],
        cwd=tmp_path,
        env={
            "PATH": os.environ["PATH"],
            "GITHUB_ACTION_PATH": str(REPO),
            "GITHUB_OUTPUT": str(output),
            "GRADCI_PYTHON": sys.executable,
            "IN_COMMAND": "run",
            **env,
        },
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert output.read_text().splitlines()[0] == f"artifact-name={expected}"
