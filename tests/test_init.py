"""``gradci init`` on real packages: the example extension with its spec removed (init, then run:
only the broken twin fails), ops declared by schema (index-like arguments get a TODO), hostile
names and messages (the YAML stays valid), the workflow it writes (linted like the examples), and a
C++ ``TORCH_LIBRARY`` op built with the machine's compiler."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import yaml
from conftest import REPO, gradci

from gradci.init import TODO
from gradci.spec import parse_spec

EXAMPLE = REPO / "examples" / "extension"
BIN = Path(sys.executable).parent


def _project(tmp_path: Path, files: dict[str, str]) -> Path:
    project = tmp_path / "project"
    for name, text in files.items():
        path = project / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return project


@pytest.fixture(scope="module")
def example(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The example without its spec, after ``gradci init --workflow``: the project and init's stdout."""
    project = tmp_path_factory.mktemp("init") / "extension"
    shutil.copytree(EXAMPLE, project, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    (project / "gradci-ops.yml").unlink()
    done = gradci("init", "--workflow", cwd=project)
    assert done.returncode == 0, done.stderr
    return project, done.stdout


def test_init_then_run_on_the_example(example: tuple[Path, str]) -> None:
    project, out = example
    assert "imported extops (pyproject.toml's [tool.setuptools] packages)" in out
    assert "found 4 torch.library ops (namespace extops)" in out
    assert "loaded back with gradci's spec loader: valid" in out
    spec = parse_spec(project / "gradci-ops.yml")
    ops = {op.name: op for op in spec.ops}
    assert spec.imports[0][0] == "extops"
    assert set(ops) == {
        "extops.fused_gelu",
        "extops.fused_gelu_broken_fake",
        "extops.softsign",
        "extops.scaled_mul",
        "extops.scaled_mul_broken",
        "extops.scale_shift",
        "extops.cube",
        "extops.cube_broken_jvp",
    }
    assert ops["extops.fused_gelu"].op == "torch.ops.extops.fused_gelu.default"
    assert ops["extops.scaled_mul"].op == "extops:scaled_mul"  # the function users call, not _ScaledMul
    assert ops["extops.scale_shift"].inplace == "extops:scale_shift_"
    assert ops["extops.softsign"].supports_gradgrad is False  # double backward raises torch's words
    assert ops["extops.fused_gelu"].supports_gradgrad is True
    # a factor left at its default of 1 would hide the twin's bug
    assert dict(ops["extops.scaled_mul_broken"].samples[0].kwargs) == {"alpha": 0.5}
    text = (project / "gradci-ops.yml").read_text()
    # softsign's backward kernel has no derivative: written commented out, with a TODO
    todo_lines = [line for line in text.splitlines() if TODO in line]
    assert len(todo_lines) == 1 and "softsign_backward" in todo_lines[0]

    done = gradci("run", cwd=project)
    assert done.returncode == 1, done.stdout + done.stderr
    results = json.loads((project / "gradci-results.json").read_text())["tests"]
    failed = {t["id"] for t in results if t["outcome"] in ("failed", "error")}
    assert failed == {"test_fn_grad_extops_scaled_mul_broken_cpu_float64"}
    assert sum(t["outcome"] == "passed" for t in results) >= 10
    assert re.search(r"gradci-ops.yml: 1 line still marked '# TODO\(gradci init\)' \(line \d+\)", done.stderr)

    # one edit, the user's: drop the deliberately broken twin; then the run is green
    text = (project / "gradci-ops.yml").read_text()
    twin = re.search(r"\n  # function extops\.functions:scaled_mul_broken .*?\n\n", text, re.S)
    assert twin is not None
    (project / "gradci-ops.yml").write_text(text.replace(twin[0], "\n"))
    green = gradci("run", cwd=project)
    assert green.returncode == 0, green.stdout + green.stderr
    after = json.loads((project / "gradci-results.json").read_text())["tests"]
    assert {t["outcome"] for t in after} <= {"passed", "skipped", "xfailed"}
    assert len(after) == sum(t["op"] != "extops.scaled_mul_broken" for t in results)


def test_it_writes_no_file_over_another(example: tuple[Path, str], tmp_path: Path) -> None:
    project, _ = example
    before = (project / "gradci-ops.yml").read_text()
    done = gradci("init", cwd=project)
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        "gradci: error: gradci-ops.yml exists; gradci init writes no file over another (--force to replace it)"
    ]
    assert (project / "gradci-ops.yml").read_text() == before
    copy = tmp_path / "copy"
    shutil.copytree(project, copy)
    done = gradci("init", "extops", "--force", "-o", "ops/mine.yml", cwd=copy)
    assert done.returncode == 0, done.stderr
    assert "imported extops (named on the command line)" in done.stdout
    assert "gradci run --spec ops/mine.yml" in done.stdout
    assert parse_spec(copy / "ops" / "mine.yml").ops


def test_the_workflow_is_the_examples_and_lints_clean(example: tuple[Path, str]) -> None:
    project, out = example
    workflow = project / ".github" / "workflows" / "gradci.yml"
    assert "wrote .github/workflows/gradci.yml" in out and "git add" in out
    document = yaml.safe_load(workflow.read_text())
    assert set(document[True]) == {"pull_request", "push"}  # YAML 1.1 reads `on` as True
    assert document[True]["push"] == {"branches": ["main"]}
    pins = set(re.findall(r"uses: (\S+ # v[\d.]+)", workflow.read_text()))
    assert pins == set(
        re.findall(r"uses: (\S+ # v[\d.]+)", (REPO / "examples/workflows/pr-check.yml").read_text())
    )
    assert "uses: gradci/gradci@v1" in workflow.read_text()
    for tool in ("actionlint", "shellcheck", "zizmor"):
        if shutil.which(tool, path=str(BIN)) is None and shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed (pip install -e '.[dev]')")
    actionlint = shutil.which("actionlint", path=str(BIN)) or "actionlint"
    shellcheck = shutil.which("shellcheck", path=str(BIN)) or "shellcheck"
    done = subprocess.run(
        [actionlint, "-shellcheck", shellcheck, str(workflow)], cwd=project, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr
    # with the repository's zizmor config: gradci/gradci follows its major tag, as in the examples
    zizmor = shutil.which("zizmor", path=str(BIN)) or "zizmor"
    config = REPO / ".github" / "zizmor.yml"
    done = subprocess.run(
        [
            zizmor,
            "--offline",
            "--format",
            "json",
            "--min-severity",
            "medium",
            "--config",
            str(config),
            str(workflow),
        ],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0 and json.loads(done.stdout) == [], done.stdout[-3000:] + done.stderr[-2000:]


SCHEMA_OPS = {
    "pyproject.toml": """\
        [project]
        name = "schema-ops"
        version = "0.1.0"
    """,
    "schema_ops/__init__.py": """\
        import torch

        lib = torch.library.Library("schemaops", "DEF")
        lib.define("gather_scale(Tensor x, Tensor indices, int dim, float alpha=1.0, Tensor? w=None) -> Tensor")
        lib.define("blend(Tensor a, Tensor b, *, float t) -> Tensor")


        def _gather_scale(x, indices, dim, alpha=1.0, w=None):
            return x.index_select(dim, indices) * alpha


        def _blend(a, b, *, t):
            return a * (1 - t) + b * t


        lib.impl("gather_scale", _gather_scale, "CompositeImplicitAutograd")
        lib.impl("blend", _blend, "CompositeImplicitAutograd")

        # a kernel for CPU only, as an image decoder's: no gradient, nothing to check
        lib.define("decode(Tensor data, float scale) -> Tensor")
        lib.impl("decode", lambda data, scale: data * scale, "CPU")
    """,
}


def test_ops_declared_by_schema(tmp_path: Path) -> None:
    project = _project(tmp_path, SCHEMA_OPS)
    done = gradci("init", cwd=project)
    assert done.returncode == 0, done.stderr
    assert "imported schema_ops (pyproject.toml's project name 'schema-ops')" in done.stdout
    text = (project / "gradci-ops.yml").read_text()
    ops = {op.name: op for op in parse_spec(project / "gradci-ops.yml").ops}
    gather = ops["schemaops.gather_scale"].samples[0]
    # indices: int64 values and a TODO; dim a plain int; alpha off its default; w (Tensor?) left out
    assert gather.args[0].dtype == "int64" and gather.args[1] == 1
    assert dict(gather.kwargs) == {"alpha": 0.5}
    assert re.search(r"dtype: \"int64\"\}  # TODO\(gradci init\): 'indices' looks like indices", text)
    blend = ops["schemaops.blend"].samples[0]
    assert dict(blend.kwargs) == {"t": 0.5}  # kwarg-only, required
    assert set(ops) == {"schemaops.gather_scale", "schemaops.blend"}
    assert (
        "  # torch.library op schemaops::decode(Tensor data, float scale) -> Tensor\n"
        f"  # {TODO} left out: no autograd kernel is registered for it" in text
    )


HOSTILE = {
    "hostile/__init__.py": """\
        import torch


        class Weird(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x, on, null, yes):
                raise RuntimeError('evil ]} "q" # \\x1b[31m x: y\\x85- name: evil\\u2028op: x\\nmore')

            @staticmethod
            def backward(ctx, grad):
                return grad


        def weird(x, *, on: float, null: bool, yes: int):
            return Weird.apply(x, on, null, yes)


        def caf\u00e9(x):  # a name the spec cannot hold (its names are ASCII)
            return Weird.apply(x, 1.0, False, 1)
    """,
}


def test_hostile_names_and_messages_keep_the_yaml_valid(tmp_path: Path) -> None:
    project = _project(tmp_path, HOSTILE)
    done = gradci("init", cwd=project)
    assert done.returncode == 0, done.stderr
    path = project / "gradci-ops.yml"
    text = path.read_text()
    assert not re.search("[\u2028\u2029\x85\x1b]", text)
    [op] = parse_spec(path).ops
    assert op.name == "hostile.weird"
    assert dict(op.samples[0].kwargs) == {"on": 0.5, "null": False, "yes": 1}  # keys stay strings
    todos = [line for line in text.splitlines() if TODO in line]
    # the forward raised: a TODO that says so, on one line
    assert any('raised RuntimeError: evil ]} "q" # [31m x: y: fix the sample' in t for t in todos), todos
    assert any("left out: its import path cannot be written in the spec" in t for t in todos), todos


CPP_OPS = {
    "cppops/__init__.py": """\
        from pathlib import Path

        import torch
        from torch.utils.cpp_extension import load_inline

        SOURCE = '''
        #include <torch/library.h>
        #include <torch/autograd.h>
        #include <ATen/ATen.h>
        at::Tensor mysin(const at::Tensor& x) { return at::sin(x); }
        at::Tensor mycos(const at::Tensor& x) { return at::cos(x); }

        // autograd in C++, as torchvision's ops: no forward-mode formula, and torch does not refuse
        struct MyCos : public torch::autograd::Function<MyCos> {
          static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x) {
            at::AutoDispatchBelowADInplaceOrView guard;
            ctx->save_for_backward({x});
            return mycos(x);
          }
          static torch::autograd::variable_list backward(
              torch::autograd::AutogradContext* ctx, torch::autograd::variable_list grads) {
            auto x = ctx->get_saved_variables()[0];
            return {grads[0] * -at::sin(x)};
          }
        };
        at::Tensor mycos_autograd(const at::Tensor& x) { return MyCos::apply(x); }

        TORCH_LIBRARY(cppops, m) {
          m.def("mysin(Tensor x) -> Tensor");
          m.def("mycos(Tensor x) -> Tensor");
          m.def("decode(Tensor data) -> Tensor");  // a kernel for CPU only: no gradient
        }
        TORCH_LIBRARY_IMPL(cppops, CPU, m) {
          m.impl("mysin", &mysin);
          m.impl("mycos", &mycos);
          m.impl("decode", &mysin);
        }
        TORCH_LIBRARY_IMPL(cppops, Autograd, m) { m.impl("mycos", &mycos_autograd); }
        '''
        build = Path(__file__).parent / "_build"
        build.mkdir(exist_ok=True)
        load_inline("cppops_ext", cpp_sources=SOURCE, is_python_module=False, build_directory=str(build))


        def _setup(ctx, inputs, output):
            ctx.save_for_backward(inputs[0])


        def _backward(ctx, grad):
            (x,) = ctx.saved_tensors
            return grad * x.cos()


        torch.library.register_autograd("cppops::mysin", _backward, setup_context=_setup)
    """,
}


@pytest.mark.slow
def test_a_cpp_torch_library_op(tmp_path: Path) -> None:
    """C++ TORCH_LIBRARY ops, one with a Python autograd, one with a C++ autograd::Function, one
    with no autograd at all, are found and sorted: about 90 s to compile on two cores."""
    if shutil.which("c++") is None and shutil.which("g++") is None:
        pytest.skip("no C++ compiler (c++, g++) to build the extension with")
    project = _project(tmp_path, CPP_OPS)
    started = time.monotonic()
    done = gradci("init", cwd=project, timeout=900)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "found 3 torch.library ops (namespace cppops)" in done.stdout, time.monotonic() - started
    ops = {op.name: op for op in parse_spec(project / "gradci-ops.yml").ops}
    assert {name: op.op for name, op in ops.items()} == {
        "cppops.mycos": "torch.ops.cppops.mycos.default",
        "cppops.mysin": "torch.ops.cppops.mysin.default",
    }  # decode has no autograd kernel: left out, saying so
    assert "left out: no autograd kernel is registered for it" in (project / "gradci-ops.yml").read_text()
    assert all(op.supports_gradgrad for op in ops.values())  # both backwards are differentiable
    done = gradci("run", cwd=project)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 line still marked" in done.stdout + done.stderr  # decode's, left out
    # Forward AD, which neither has: the C++ autograd::Function refuses it in its own words (a
    # RuntimeError), which is what a project's op that declares none should do; through the Python
    # autograd torch gives zero tangents instead, and gradci says so, not only "mismatch".
    done = gradci("run", "--checks", "forward-ad", "--json", "fwd.json", cwd=project)
    assert done.returncode == 1, done.stdout + done.stderr
    tests = {t["op"]: t for t in json.loads((project / "fwd.json").read_text())["tests"]}
    assert tests["cppops.mycos"]["outcome"] == "passed"
    failed = tests["cppops.mysin"]
    assert failed["outcome"] == "failed"
    assert failed["message"].startswith(
        "AssertionError: forward AD ran though the op declares supports_forward_ad: false"
    )
    assert float(failed["mismatch"]["analytical"]) == 0 != float(failed["mismatch"]["numerical"])
