"""A new user's first minutes: gradci run in a subfolder of a project finds the project's spec and
config; with neither it says it checks PyTorch's own suite; progress and ETA weighted by expected
durations; a failure printed once; skip reasons summarised; repro errors that say what is wrong;
--failed-from and --last-failed."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import REPO, Completed

from gradci.options import find_config, find_spec, resolve_with_sources, search_path

EXAMPLE = REPO / "examples" / "extension"


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A repository (a .git folder) with a subfolder as the working directory, no GITHUB_WORKSPACE."""
    root = tmp_path / "proj"
    (root / ".git").mkdir(parents=True)
    (root / "src" / "deep").mkdir(parents=True)
    monkeypatch.delenv("GITHUB_WORKSPACE", raising=False)
    monkeypatch.chdir(root / "src" / "deep")
    return root


# --- looking for the project's files -----------------------------------------------------------------


def test_the_spec_is_found_up_to_the_repository_root(repo: Path) -> None:
    (repo / "gradci-ops.yml").write_text("ops: []\n")
    assert find_spec(Path.cwd()) == Path("../../gradci-ops.yml")  # as a repro command names it
    (repo / "src" / "gradci-ops.yml").write_text("ops: []\n")
    assert find_spec(Path.cwd()) == Path("../gradci-ops.yml")  # the nearest wins


def test_nothing_above_the_repository_root_is_taken(repo: Path) -> None:
    (repo.parent / "gradci-ops.yml").write_text("ops: []\n")  # another project's, above this one
    (repo.parent / ".gradci.yml").write_text("workers: 3\n")
    assert search_path(Path.cwd())[-1] == repo
    assert find_spec(Path.cwd()) is None and find_config(Path.cwd()) is None


def test_outside_a_repository_only_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GITHUB_WORKSPACE", raising=False)
    (tmp_path / "sub").mkdir()
    (tmp_path / "gradci-ops.yml").write_text("ops: []\n")
    monkeypatch.chdir(tmp_path / "sub")
    if any((folder / ".git").exists() for folder in Path.cwd().parents):
        pytest.skip("the temporary folder is inside a repository")
    assert search_path(Path.cwd()) == [Path.cwd()] and find_spec(Path.cwd()) is None


def test_github_workspace_is_the_root(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GITHUB_WORKSPACE", str(repo / "src"))
    (repo / "gradci-ops.yml").write_text("ops: []\n")  # above the workspace: not taken
    assert search_path(Path.cwd()) == [repo / "src" / "deep", repo / "src"]
    assert find_spec(Path.cwd()) is None


def test_a_config_above_names_paths_from_its_folder(repo: Path) -> None:
    (repo / "pyproject.toml").write_text('[tool.gradci]\nworkers = 3\njson = "out/r.json"\n')
    (repo / "src" / "pyproject.toml").write_text("[project]\nname = 'x'\n")  # no [tool.gradci]: passed over
    resolved = resolve_with_sources({}, environ={})
    assert resolved.config == repo / "pyproject.toml"
    assert resolved.settings.workers == 3
    assert resolved.settings.json == Path("../../out/r.json")
    # a flag is the user's, from the working directory
    assert resolve_with_sources({"json": "mine.json"}, environ={}).settings.json == Path("mine.json")


# --- real runs -------------------------------------------------------------------------------------------


def run_in(cwd: Path, *args: str, env: dict[str, str] | None = None) -> Completed:
    from conftest import gradci

    return gradci(*args, cwd=cwd, env={"GITHUB_WORKSPACE": "", **(env or {})})


@pytest.fixture(scope="module")
def example_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    project = tmp_path_factory.mktemp("first") / "extension"
    shutil.copytree(
        EXAMPLE,
        project,
        ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__", "gradci-results.json", "*.xml"),
    )
    (project / ".git").mkdir()
    (project / "docs" / "api").mkdir(parents=True)
    return project


def test_a_run_in_a_subfolder_checks_the_projects_ops(example_project: Path) -> None:
    sub = example_project / "docs" / "api"
    done = run_in(sub, "run", "--ops", "extops.scaled_mul", "--checks", "grad", "--progress", "plain")
    assert done.returncode == 0, done.stderr
    tests = json.loads((sub / "gradci-results.json").read_text())["tests"]
    assert {t["op"] for t in tests} == {"extops.scaled_mul"}
    assert "PyTorch's own" not in done.stderr
    assert "spec=../../gradci-ops.yml (found in the project)" in done.stderr


def test_an_op_module_named_by_a_config_above_imports_from_the_root(repo: Path) -> None:
    """A module at the repository's root, named in its config, imports in a subfolder run without
    being installed (as pytest finds a rootdir's modules)."""
    source = (REPO / "tests" / "fixtures" / "gradci_testops.py").read_text()
    (repo / "rootops_x.py").write_text(source)  # on no path but the root's
    (repo / ".gradci.yml").write_text("op-modules: rootops_x\nupstream: false\n")
    done = run_in(Path.cwd(), "list", "--ops", "testops.good_scale", "--checks", "grad")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["test_fn_grad_testops_good_scale_cpu_float64"]


def test_without_a_spec_it_says_it_checks_pytorchs_suite(tmp_path: Path) -> None:
    (tmp_path / ".git").mkdir()
    done = run_in(tmp_path, "run", "--ops", "abs,sin", "--checks", "grad", "--dtypes", "float64")
    assert done.returncode == 0, done.stderr
    assert (
        "no gradci-ops.yml (here or up to the repository root) or --op-modules: checking PyTorch's own "
        "OpInfos (2 tests)" in done.stderr.splitlines()
    )


# --- gradci repro -----------------------------------------------------------------------------------


def test_repro_a_sample_the_op_does_not_have(example_project: Path) -> None:
    """scaled_mul_broken has 4 samples: --sample 9 is one line naming it and its samples, exit 2
    (not the spec's probe of another op, which --sample once restricted too)."""
    done = run_in(
        example_project, "repro", "test_fn_grad_extops_scaled_mul_broken_cpu_float64", "--sample", "9"
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines() == [
        "gradci: error: --sample 9: extops.scaled_mul_broken has 4 samples (0\u20133) in "
        "test_fn_grad_extops_scaled_mul_broken_cpu_float64 (without --sample every sample runs)"
    ]
    # the last one runs, and the first fails as the run said
    done = run_in(
        example_project, "repro", "test_fn_grad_extops_scaled_mul_broken_cpu_float64", "--sample", "3"
    )
    assert done.returncode in (0, 1) and "outcome: " in done.stdout, done.stderr
    done = run_in(
        example_project, "repro", "test_fn_grad_extops_scaled_mul_broken_cpu_float64", "--sample", "0"
    )
    assert done.returncode == 1 and "outcome: failed" in done.stdout and "sample input 0" in done.stdout


def test_repro_an_unknown_id_suggests_the_closest(example_project: Path) -> None:
    done = run_in(example_project, "repro", "test_fn_grad_extops_scaled_mul_brokn_cpu_float64")
    assert done.returncode == 2
    (line,) = done.stderr.splitlines()
    assert line.startswith("gradci: error: no test 'test_fn_grad_extops_scaled_mul_brokn_cpu_float64' among")
    assert "did you mean 'test_fn_grad_extops_scaled_mul_broken_cpu_float64'" in line


@pytest.mark.parametrize(
    "test_id",
    [
        "test_fn_grad_extops_scaled\nmul::error::x_cpu_float64",
        "::add-mask::gradci\r##[error]x",
        "tést_fn_grad_ü",
    ],
)
def test_repro_hostile_ids_are_one_line(example_project: Path, test_id: str) -> None:
    done = run_in(example_project, "repro", test_id)
    assert done.returncode == 2
    (line,) = done.stderr.splitlines()
    assert line.startswith("gradci: error: ") and "::add-mask::" not in line.split("'")[0]


# --- --failed-from, --last-failed ---------------------------------------------------------------------

OPS = ("--op-modules", "gradci_testops", "--ops", "testops.*scale")


@pytest.fixture(scope="module")
def failed_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real run with one failure (wrong_scale's grad) among passes and skips."""
    folder = tmp_path_factory.mktemp("failed")
    done = run_in(folder, "run", *OPS, "--workers", "1", "--reruns", "0", "--progress", "none")
    assert done.returncode == 1, done.stderr
    return folder


def _ids(path: Path) -> set[str]:
    return {t["id"] for t in json.loads(path.read_text())["tests"]}


def test_failed_from_runs_only_what_failed(failed_run: Path, tmp_path: Path) -> None:
    shutil.copy(failed_run / "gradci-results.json", tmp_path / "earlier.json")
    listed = run_in(tmp_path, "list", *OPS, "--failed-from", "earlier.json")
    assert listed.stdout.split() == ["test_fn_grad_testops_wrong_scale_cpu_float64"], listed.stderr
    done = run_in(tmp_path, "run", *OPS, "--failed-from", "earlier.json", "--progress", "plain")
    assert done.returncode == 1, done.stderr
    assert "--failed-from: running the 1 test that failed in earlier.json" in done.stderr
    assert _ids(tmp_path / "gradci-results.json") == {"test_fn_grad_testops_wrong_scale_cpu_float64"}


def test_last_failed_reads_the_json_default(failed_run: Path, tmp_path: Path) -> None:
    shutil.copy(failed_run / "gradci-results.json", tmp_path / "gradci-results.json")
    done = run_in(tmp_path, "run", *OPS, "--last-failed", "--progress", "plain")
    assert done.returncode == 1, done.stderr
    assert _ids(tmp_path / "gradci-results.json") == {"test_fn_grad_testops_wrong_scale_cpu_float64"}
    # json (here GRADCI_JSON; list takes no --json) moves where the last run wrote, and where it reads
    shutil.copy(failed_run / "gradci-results.json", tmp_path / "mine.json")
    listed = run_in(tmp_path, "list", *OPS, "--last-failed", env={"GRADCI_JSON": "mine.json"})
    assert listed.stdout.split() == ["test_fn_grad_testops_wrong_scale_cpu_float64"], listed.stderr


def test_nothing_failed_runs_nothing(failed_run: Path, tmp_path: Path) -> None:
    data = json.loads((failed_run / "gradci-results.json").read_text())
    for test in data["tests"]:
        if test["outcome"] == "failed":
            test.update(outcome="passed", message="")
            for key in ("sample_index", "sample", "mismatch", "traceback", "output", "repro"):
                test.pop(key, None)
    text = json.dumps(data)
    (tmp_path / "gradci-results.json").write_text(text)
    done = run_in(tmp_path, "run", *OPS, "--last-failed")
    assert done.returncode == 0, done.stderr
    assert "--last-failed: no test failed in gradci-results.json: nothing to run" in done.stderr
    assert (tmp_path / "gradci-results.json").read_text() == text  # left as it was


@pytest.mark.parametrize(
    ("content", "flags", "code", "message"),
    [
        (
            None,
            ("--failed-from", "missing.json"),
            3,
            "gradci: error: --failed-from: missing.json: no such results file",
        ),
        ('{"schema": ', ("--failed-from", "r.json"), 3, "gradci: error: --failed-from: r.json: "),
        ("[]", ("--last-failed", "--json", "r.json"), 3, "gradci: error: --last-failed: r.json: "),
        (
            "",
            ("--last-failed", "--json", ""),
            2,
            "gradci: error: --last-failed reads the results --json names",
        ),
        (
            "",
            ("--last-failed", "--failed-from", "r.json"),
            2,
            "gradci: error: --failed-from and --last-failed",
        ),
    ],
)
def test_unusable_results_are_one_line(
    tmp_path: Path, content: str | None, flags: tuple[str, ...], code: int, message: str
) -> None:
    if content is not None:
        (tmp_path / "r.json").write_text(content)
    done = run_in(tmp_path, "run", *OPS, *flags)
    assert done.returncode == code, done.stderr
    (line,) = done.stderr.splitlines()
    assert line.startswith(message), line
    assert not (tmp_path / "gradci-results.json").exists()


def test_failures_none_of_which_is_selected(failed_run: Path, tmp_path: Path) -> None:
    shutil.copy(failed_run / "gradci-results.json", tmp_path / "earlier.json")
    done = run_in(
        tmp_path,
        "run",
        "--op-modules",
        "gradci_testops",
        "--ops",
        "testops.good_scale",
        "--failed-from",
        "earlier.json",
    )
    assert done.returncode == 2
    assert done.stderr.splitlines()[-1].startswith(
        "gradci: error: --failed-from: none of the 1 failing tests in earlier.json is among the selected tests"
    )


# --- the console ---------------------------------------------------------------------------------------


def test_progress_is_weighted_by_expected_durations(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A real run in-process, one worker, with recorded durations where one test is most of the
    expected time: once it is done the progress says ~99% though 1 of 10 tests is, and each line
    names the test running."""
    import io

    from gradci.console import PlainProgress
    from gradci.options import Settings
    from gradci.session import Session

    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(REPO / "tests" / "fixtures"))
    settings = Settings(op_modules=("gradci_testops",), ops=("testops.*scale",), workers=1, reruns=0)
    first = Session.prepare(settings, ["gradci"])
    heavy = "test_fn_gradgrad_testops_good_scale_cpu_float64"
    recorded = {t.id: 0.001 for t in first.plan.tests} | {heavy: 100.0}
    from results_factory import result, save

    tests = []
    for test in first.plan.tests:
        made = result("x", duration=recorded[test.id])
        made.id = test.id
        tests.append(made)
    save(tmp_path / "old.json", tests)
    session = Session.prepare(Settings(**{**settings.__dict__, "durations": Path("old.json")}), ["gradci"])
    stream = io.StringIO()
    progress = PlainProgress(session.expected_durations(), stream, interval=0)
    starts: list[str] = []

    def start(test_id: str) -> None:
        starts.append(test_id)
        progress.start(test_id)

    results, error = session.execute(progress.advance, start, progress.tick)
    progress.close()
    assert error is None and len(results.tests) == 10
    assert starts[0] == heavy  # longest first
    lines = [line for line in stream.getvalue().splitlines() if line.startswith("[")]
    after_first = next(line for line in lines if line.startswith("[ 1/10]"))
    assert int(after_first.split("]")[1].split("%")[0]) >= 99, after_first
    assert lines[-1].startswith("[10/10] 100%")
    assert any(f"running {heavy} (0:00:0" in line for line in lines), lines  # while it ran


def test_a_failure_is_printed_once_and_skips_summarised(tmp_path: Path) -> None:
    """A real run with a deterministic failure, re-run once: its text is printed in full once, and
    named in one line of the summary; the skip reasons are counted."""
    done = run_in(tmp_path, "run", *OPS, "--progress", "plain", "--reruns", "1")
    assert done.returncode == 1
    out = done.stdout + done.stderr
    failed = "test_fn_grad_testops_wrong_scale_cpu_float64 - GradcheckError"
    assert out.count(failed) == 2, out  # in full as it happened, and the summary's line
    assert out.count("repro: gradci repro test_fn_grad_testops_wrong_scale") == 1, out
    assert out.count("max rel error 0.5") == 1
    assert "1 test failed again as at first (deterministic)" in done.stderr
    assert "failures (in full above):" in done.stdout
    assert (
        "6 skipped: 2 'Skipped! Operation does support gradgrad', 2 'Op has no inplace variant!', "
        "2 'Skipped! Operation does not support inplace autograd.'" in done.stdout.splitlines()
    )
    # the heading comes before any progress
    err = done.stderr.splitlines()
    assert err.index("gradci: running 10 tests") < min(
        i for i, line in enumerate(err) if line.startswith("[")
    )


def test_without_progress_the_summary_has_it_all(tmp_path: Path) -> None:
    done = run_in(tmp_path, "run", *OPS, "--progress", "none", "--reruns", "0")
    assert done.returncode == 1 and done.stderr == ""
    assert (
        "failures:" in done.stdout
        and "      repro: gradci repro test_fn_grad_testops_wrong_scale" in done.stdout
    )


def test_skip_reasons_of_odd_text_stay_one_line() -> None:
    from results_factory import result, results

    from gradci.console import skip_line
    from gradci.results import Outcome

    tests = [result(f"op{i}", Outcome.SKIPPED, message="Skipped!\n::add-mask::x\r'\"") for i in range(3)]
    tests += [result(f"other{i}", Outcome.SKIPPED, message=f"reason {i % 4}") for i in range(9)]
    line = skip_line(results(tests))
    assert line is not None and "\n" not in line and "\r" not in line
    assert line.startswith("12 skipped: 3 'Skipped!'") and line.endswith("4 for 2 other reasons")
