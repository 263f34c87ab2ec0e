"""Where ops are located (gradci/locate.py): the line that constructs each OpInfo, whichever module's
list holds it; upstream ops in the installed torch; fork mode (a PyTorch checkout under test) with
the op's entry of tools/autograd/derivatives.yaml. Real op modules, real torch, real files."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from conftest import FIXTURES, REPO, gradci

from gradci.locate import Derivative, Location, detect_checkout
from gradci.results import Outcome, Results, RunInfo, TestResult, load

SCHEMA = json.loads((REPO / "gradci/schemas/results-v2.schema.json").read_text())
TORCH_PARENT = Path(
    subprocess.run(
        [sys.executable, "-c", "import torch; print(torch.__file__)"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
).parent.parent
CMI = "torch/testing/_internal/common_methods_invocations.py"
# PyTorch's derivatives.yaml as torchgen ships it in the wheel (the one the installed torch was built with)
DERIVATIVES_YAML = TORCH_PARENT / "torchgen/packaged/autograd/derivatives.yaml"


def marks(path: Path) -> dict[str, int]:
    """``# at: NAME`` comments of a fixture: where its OpInfos must be located."""
    found = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        match = re.search(r"# at: (\w+)", line)
        if match:
            found[match[1]] = number
    return found


def line_of(path: Path, text: str) -> int:
    [number] = [n for n, line in enumerate(path.read_text().splitlines(), 1) if text in line]
    return number


# --- a project's ops ----------------------------------------------------------------------------


HELPED = """\
from gradci_testops import _op, good_scale


def twice(x, w=None):
    return good_scale(x, w)


op_db = [
    _op("helped.twice", twice),
]
"""


def test_an_opinfo_built_by_a_helper_outside_the_repository_is_located_at_the_repositorys_call(
    tmp_path: Path,
) -> None:
    """A shared helper package (here tests/fixtures, outside the repository) builds the OpInfo: the
    annotation goes to the repository's line that calls it, not to a file the check run cannot show."""
    (tmp_path / "helped_ops.py").write_text(HELPED)
    done = gradci("ops", "--op-modules", "helped_ops", cwd=tmp_path, env={"GITHUB_WORKSPACE": str(tmp_path)})
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        f"helped.twice\tuser  helped_ops.py:{line_of(tmp_path / 'helped_ops.py', '_op(')}"
    ]


def test_reexported_opinfos_keep_the_line_that_constructs_them(tmp_path: Path) -> None:
    """``op_db = mine + other.op_db``: each OpInfo at its constructor call in its own module (a
    torch.library op, which has no Python function to fall back on, included)."""
    done = gradci("ops", "--op-modules", "gradci_reexport", cwd=tmp_path, env={"GITHUB_WORKSPACE": str(REPO)})
    assert done.returncode == 0, done.stderr
    shown = dict(line.split("\t") for line in done.stdout.splitlines())
    locops, mine = marks(FIXTURES / "gradci_locops.py"), marks(FIXTURES / "gradci_reexport.py")
    testops = FIXTURES / "gradci_testops.py"
    good, wrong = (line_of(testops, f'_op("testops.{name}"') for name in ("good_scale", "wrong_scale"))
    where = {
        "reexport.mine": f"gradci_reexport.py:{mine['mine']}",
        "locops.twice": f"gradci_locops.py:{locops['library']}",
        "locops.helper_a": f"gradci_locops.py:{locops['helper_a']}",  # the helper's call, not its body
        "locops.helper_b": f"gradci_locops.py:{locops['helper_b']}",
        "locops.loop_2": f"gradci_locops.py:{locops['loop']}",  # the loop, not the helper it calls
        "locops.loop_3": f"gradci_locops.py:{locops['loop']}",
        "locops.list_2": f"gradci_locops.py:{locops['list']}",  # built in a list by a helper
        "locops.list_3": f"gradci_locops.py:{locops['list']}",
        "testops.good_scale": f"gradci_testops.py:{good}",
        "testops.wrong_scale": f"gradci_testops.py:{wrong}",
    }
    assert shown == {name: f"user  tests/fixtures/{at}" for name, at in where.items()}


def test_an_opinfo_built_before_recording_is_found_by_its_literal_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An op module imported before gradci began recording: its constructor call, by name, in the
    module holding the list or where its sample function is."""
    monkeypatch.syspath_prepend(str(FIXTURES))
    import gradci_locops

    from gradci import locate

    [twice] = [op for op in gradci_locops.op_db if op.name == "locops.twice"]
    if hasattr(twice, "_gradci_constructed"):
        delattr(twice, "_gradci_constructed")
    [found] = locate.locate_opinfos([twice], root=REPO)
    assert found == Location(
        "tests/fixtures/gradci_locops.py", marks(FIXTURES / "gradci_locops.py")["library"]
    )


# --- upstream ops -------------------------------------------------------------------------------

LOAD = """
import json, sys
from pathlib import Path
from gradci.options import Settings
from gradci.session import load_entries
source = sys.argv[1] or None
entries = load_entries(Settings(torch_source=Path(source) if source else None))
print(json.dumps([
    {"op": e.full_name, "db": e.db, "location": e.location.to_json() if e.location else None,
     "derivative": e.derivative.__dict__ if e.derivative else None}
    for e in entries
]))
"""


def upstream_entries(workspace: Path, torch_source: Path | None = None) -> dict[str, dict[str, Any]]:
    """Every upstream op as ``gradci run`` loads it, in a fresh process (recording from the start)."""
    env = {**_clean_env(), "GITHUB_WORKSPACE": str(workspace)}
    done = subprocess.run(
        [sys.executable, "-c", LOAD, str(torch_source or "")],
        cwd=workspace,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    return {e["op"]: e for e in json.loads(done.stdout)}


def _clean_env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "GRADCI_"))}


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    return upstream_entries(tmp_path_factory.mktemp("project"))


def test_every_upstream_op_is_located_in_the_installed_torch(upstream: dict[str, dict[str, Any]]) -> None:
    assert len(upstream) > 700
    files = set()
    for name, entry in upstream.items():
        location = entry["location"]
        assert location is not None, name
        assert location["relative_to"] == "torch" and location["file"].startswith("torch/testing/_internal/")
        # the line starts the constructor call (or a helper's call that makes just this op)
        text = (TORCH_PARENT / location["file"]).read_text().splitlines()[location["line"] - 1]
        assert re.search(r"Info\(|_opinfo\(", text), (name, location, text)
        assert entry["derivative"] is None  # not a fork
        files.add(location["file"])
    assert {
        CMI,
        "torch/testing/_internal/opinfo/definitions/linalg.py",
        "torch/testing/_internal/opinfo/definitions/special.py",
        "torch/testing/_internal/hop_db.py",
        "torch/testing/_internal/custom_op_db.py",
    } <= files
    cmi = (TORCH_PARENT / CMI).read_text().splitlines()
    assert "UnaryUfuncInfo('abs'," in cmi[upstream["abs"]["location"]["line"] - 1]
    det = upstream["linalg.det"]["location"]
    assert det["file"] == "torch/testing/_internal/opinfo/definitions/linalg.py"
    call = (TORCH_PARENT / det["file"]).read_text().splitlines()[det["line"] - 1 : det["line"] + 1]
    assert call[0].strip() == "OpInfo(" and call[1].strip() == '"linalg.det",'  # its first line
    # mvlgamma's variants come from one helper: each at its own call of it
    lines = {upstream[f"mvlgamma.mvlgamma_p_{p}"]["location"]["line"] for p in (1, 3, 5)}
    assert len(lines) == 3


def test_an_upstream_failure_carries_its_location_into_the_json_and_junit(tmp_path: Path) -> None:
    done = gradci(
        "run", "--ops", "abs", "--checks", "grad", "--dtypes", "float64", "--progress", "plain", cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    [test] = load(tmp_path / "gradci-results.json").tests
    assert test.location is not None and test.location.relative_to == "torch"
    assert test.location.file == CMI and test.location.line > 1
    raw = json.loads((tmp_path / "gradci-results.json").read_text())
    assert raw["tests"][0]["location"] == {"file": CMI, "line": test.location.line, "relative_to": "torch"}
    jsonschema.validate(raw, SCHEMA)
    [case] = ET.parse(tmp_path / "gradci-junit.xml").getroot().iter("testcase")
    assert (case.get("file"), case.get("line")) == (CMI, str(test.location.line))


# --- fork mode ------------------------------------------------------------------------------------


def fork_checkout(root: Path) -> Path:
    """A PyTorch checkout's layout: one definitions file copied from the installed torch (so the
    lines agree) and the derivatives.yaml that torch was built with."""
    (root / "torch/testing/_internal").mkdir(parents=True)
    shutil.copy(TORCH_PARENT / CMI, root / CMI)
    (root / "tools/autograd").mkdir(parents=True)
    shutil.copy(DERIVATIVES_YAML, root / "tools/autograd/derivatives.yaml")
    return root


def entry_line(name: str) -> int:
    """The ``- name:`` line of an entry of the shipped derivatives.yaml, found by plain text."""
    return line_of(DERIVATIVES_YAML, f"- name: {name}(")


def test_fork_mode_locates_upstream_ops_in_the_checkout_and_finds_their_formula(
    tmp_path: Path, upstream: dict[str, dict[str, Any]]
) -> None:
    checkout = fork_checkout(tmp_path / "pytorch")
    entries = upstream_entries(tmp_path, checkout)
    derivatives = "pytorch/tools/autograd/derivatives.yaml"
    # in the checkout, relative to the repository (the workspace holds the checkout)
    abs_op = entries["abs"]
    assert abs_op["location"] == {"file": f"pytorch/{CMI}", "line": upstream["abs"]["location"]["line"]}
    assert abs_op["derivative"] == {"file": derivatives, "line": entry_line("abs"), "name": "abs"}
    # a definitions file the checkout lacks stays in the installed torch
    assert entries["linalg.det"]["location"]["relative_to"] == "torch"
    # overloads: the one without a name, else .Tensor; an OpOverload's own; an in-place entry only
    expected = {
        "div.trunc_rounding": "div.Tensor",
        "add": "add.Tensor",
        "linalg.det": "_linalg_det",  # composite: its implementation's formula
        "softmax": "_softmax",
        "nn.functional.elu": "elu",
        "conj_physical": "conj_physical_",
        "torch.ops.aten._safe_softmax.default": "_safe_softmax",
    }
    found = {name: entries[name]["derivative"] for name in expected}
    assert {name: d["name"] for name, d in found.items()} == expected
    for name, d in found.items():
        entry = d["name"].replace(".", r"\.")
        line = DERIVATIVES_YAML.read_text().splitlines()[d["line"] - 1]
        assert re.match(rf"- name:\s+{entry}\(", line), (name, line)
    assert sum(1 for e in entries.values() if e["derivative"]) > 300
    # a composite op without an entry of its own gets none
    assert entries["broadcast_to"]["derivative"] is None


def test_a_torch_imported_from_inside_the_repository_is_a_checkout(tmp_path: Path) -> None:
    workspace = tmp_path / "ws"
    assert detect_checkout(str(workspace / "torch/__init__.py"), workspace) == workspace
    assert detect_checkout(str(workspace / "pytorch/torch/__init__.py"), workspace) == workspace / "pytorch"
    venv = workspace / ".venv/lib/python3.11/site-packages/torch/__init__.py"
    assert detect_checkout(str(venv), workspace) is None  # installed, even inside the workspace
    assert detect_checkout(str(tmp_path / "elsewhere/torch/__init__.py"), workspace) is None
    # this repository's own virtualenv holds its torch: not a checkout
    import torch

    assert detect_checkout(torch.__file__, REPO) is None


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: d / "nowhere", "torch-source '{}': not a directory"),
        (
            lambda d: d,
            "torch-source '{}': not a PyTorch checkout (no torch/ and no tools/autograd/derivatives.yaml)",
        ),
    ],
    ids=["missing", "not-a-checkout"],
)
def test_a_torch_source_that_is_no_checkout_is_one_line_and_exit_2(
    tmp_path: Path, make: Any, message: str
) -> None:
    path = make(tmp_path)
    done = gradci("ops", "--torch-source", str(path), cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.startswith(f"gradci: error: {message.format(path)}")
    assert len(done.stderr.strip().splitlines()) == 1


def test_locations_and_derivatives_survive_the_results_file(tmp_path: Path) -> None:
    run = RunInfo("0.1.0", "2.13.0", None, "3.11", "linux", "cpu", None, None, "2025-01-06T09:00:00+00:00")
    test = TestResult(
        "test_fn_grad_abs_cpu_float64",
        "abs",
        "grad",
        "cpu",
        "float64",
        Outcome.FAILED,
        0.1,
        location=Location(CMI, 1234, "torch"),
        derivative=Derivative("tools/autograd/derivatives.yaml", 221, "abs"),
    )
    Results(run, [test]).save(tmp_path / "r.json")
    raw = json.loads((tmp_path / "r.json").read_text())
    jsonschema.validate(raw, SCHEMA)
    assert raw["tests"][0]["derivative"] == {
        "file": "tools/autograd/derivatives.yaml",
        "line": 221,
        "name": "abs",
    }
    [back] = load(tmp_path / "r.json").tests
    assert (back.location, back.derivative) == (test.location, test.derivative)
