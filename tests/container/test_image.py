"""The container image, for real: built from the Dockerfile with podman, run as a user would run it,
and driven by ``gradci container`` through the Docker API that podman serves.

Needs podman (``.ci/slow`` installs it) and, the first time, root: the base image is made with
debootstrap and the build installs from a wheelhouse (``prepare.sh``), as this machine reaches no
container registry. Skips, saying why, where podman is not usable.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import REPO, gradci
from junitparser import JUnitXml

from gradci import __version__

pytestmark = pytest.mark.slow

HERE = Path(__file__).resolve().parent
IMAGE = "localhost/gradci:slow-test"
# An unprivileged caller that is not the image's default user (1000).
CALLER = (1234, 1234)


def _podman_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("CONTAINERS_CONF", str(HERE / "containers.conf"))
    return env


def _podman(*args: str, check: bool = True, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        ["podman", *args], env=_podman_env(), capture_output=True, text=True, timeout=timeout
    )
    if check and done.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)} exited {done.returncode}:\n{done.stderr[-3000:]}")
    return done


@pytest.fixture(scope="module")
def engine() -> None:
    if shutil.which("podman") is None:
        pytest.skip("podman is not installed (apt-get install podman buildah runc; .ci/slow does it)")
    info = _podman("info", check=False, timeout=60)
    if info.returncode != 0:
        last = (info.stderr.strip().splitlines() or ["no output"])[-1]
        pytest.skip(f"podman does not work here: {last}")


def _build(tag: str, *build_args: str, torch_version: str | None = None) -> str:
    """The image, built from the repository's Dockerfile and build context, from a wheelhouse."""
    env = _podman_env()
    env.setdefault("PYTHON", sys.executable)
    if torch_version is not None:
        env["TORCH_VERSION"] = torch_version
    prepared = subprocess.run(
        [str(HERE / "prepare.sh")], env=env, capture_output=True, text=True, timeout=1800
    )
    if prepared.returncode == 77:
        pytest.skip("no base image yet and debootstrap needs root: run .ci/slow as root once")
    assert prepared.returncode == 0, prepared.stderr[-3000:]
    made = dict(line.split("=", 1) for line in prepared.stdout.splitlines() if "=" in line)

    # The wheelhouse enters the build context as ./wheelhouse (hard links: instant, no space).
    wheelhouse = REPO / "wheelhouse"
    shutil.rmtree(wheelhouse, ignore_errors=True)
    shutil.copytree(made["WHEELHOUSE"], wheelhouse, copy_function=os.link)
    started = time.monotonic()
    try:
        _podman(
            "build",
            "--build-arg",
            f"BASE_IMAGE={made['BASE_IMAGE']}",
            "--build-arg",
            "WHEELHOUSE=wheelhouse",
            *(arg for pair in build_args for arg in ("--build-arg", pair)),
            "--tag",
            tag,
            str(REPO),
            timeout=2400,
        )
    finally:
        shutil.rmtree(wheelhouse, ignore_errors=True)
    print(f"image {tag} built in {time.monotonic() - started:.0f} s")
    return tag


@pytest.fixture(scope="module")
def image(engine: None) -> str:
    return _build(IMAGE)


def _owned_dir(path: Path, uid: int, gid: int) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    os.chown(path, uid, gid)
    return path


def _testcases(path: Path) -> dict[str, str]:
    """JUnit test name -> outcome (passed, skipped, failure, error)."""
    outcomes = {}
    for suite in JUnitXml.fromfile(str(path)):
        for case in suite:
            outcomes[case.name] = case.result[0]._tag if case.result else "passed"
    return outcomes


def test_image_is_small_non_root_and_runs_gradci(image: str) -> None:
    config = json.loads(_podman("image", "inspect", image).stdout)[0]["Config"]
    assert config["Entrypoint"] == ["gradci"]
    assert config["User"] == "1000:1000"
    assert config["WorkingDir"] == "/work"
    probe = _podman(
        "run",
        "--rm",
        "--entrypoint",
        "/bin/sh",
        image,
        "-c",
        "id -u; command -v gcc cc c++ g++ || echo no-compiler; "
        "ls /root/.cache /home/gradci/.cache 2>/dev/null || echo no-cache; "
        "python3 -c 'import torch; print(torch.__version__)'; gradci --version",
    ).stdout.split()
    assert probe == ["1000", "no-compiler", "no-cache", "2.13.0+cpu", "gradci", __version__]
    size = int(json.loads(_podman("image", "inspect", image).stdout)[0]["Size"])
    # torch's CPU build is ~0.8 GB of it; a leftover pip cache or toolchain would show up here.
    assert size < 1.4e9, f"image is {size / 1e9:.2f} GB"


def test_readme_docker_run_line_writes_junit_owned_by_the_caller(image: str, tmp_path: Path) -> None:
    """`docker run --rm --user "$(id -u):$(id -g)" -v "$PWD:/work" IMAGE run --ops 'add*' --junit ...`"""
    project = _owned_dir(tmp_path / "project", *CALLER)
    done = _podman(
        "run",
        "--rm",
        "--user",
        f"{CALLER[0]}:{CALLER[1]}",
        "-v",
        f"{project}:/work",
        image,
        "run",
        "--ops",
        "add*",
        "--junit",
        "/work/out.xml",
        check=False,
    )
    assert done.returncode == 0, done.stderr
    outcomes = _testcases(project / "out.xml")
    # the same tests as gradci plans outside the image (same gradci, same torch)
    planned = gradci("list", "--ops", "add*", cwd=tmp_path)
    assert set(outcomes) == set(planned.stdout.split()) and len(outcomes) > 50
    assert outcomes["test_fn_grad_add_cpu_float64"] == "passed"
    assert outcomes["test_fn_grad_addmm_cpu_complex128"] == "passed"
    for name in ("out.xml", "gradci-results.json"):
        stat = (project / name).stat()
        assert (stat.st_uid, stat.st_gid) == CALLER, name
    run = json.loads((project / "gradci-results.json").read_text())["run"]
    assert run["device"] == "cpu"
    # the image ships jemalloc and gradci preloaded it into the test processes
    assert run["allocator"] == "libjemalloc.so.2"


def test_default_user_is_uid_1000(image: str, tmp_path: Path) -> None:
    project = _owned_dir(tmp_path / "project", 1000, 1000)
    done = _podman("run", "--rm", "-v", f"{project}:/work", image, "run", "--ops", "mul", "--checks", "grad")
    assert "passed" in done.stdout
    assert (project / "gradci-junit.xml").stat().st_uid == 1000


@pytest.fixture(scope="module")
def docker_api(engine: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """podman serving the Docker Engine API on a unix socket: DOCKER_HOST for the docker SDK."""
    socket = tmp_path_factory.mktemp("podman") / "docker.sock"
    service = subprocess.Popen(
        ["podman", "system", "service", "--time=0", f"unix://{socket}"],
        env=_podman_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        for _ in range(100):
            if socket.exists():
                break
            if service.poll() is not None:
                pytest.fail(f"podman system service exited: {service.stderr.read().decode()[-2000:]}")  # type: ignore[union-attr]
            time.sleep(0.1)
        else:
            pytest.fail("podman system service did not create its socket in 10 s")
        yield f"unix://{socket}"
    finally:
        service.terminate()
        service.wait(timeout=30)


def _gradci(
    *args: str, cwd: Path, docker_host: str, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRADCI_")}
    env["DOCKER_HOST"] = docker_host
    return subprocess.run(
        [sys.executable, "-m", "gradci", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_gradci_container_runs_the_image_on_the_current_directory(
    image: str, docker_api: str, tmp_path: Path
) -> None:
    project = tmp_path / "project"
    project.mkdir(mode=0o755)  # writable by its owner only: the container must run as the caller
    done = _gradci(
        "container",
        "--image",
        image,
        "--",
        "run",
        "--ops",
        "add,mul",
        "--checks",
        "grad",
        "--junit",
        str(project / "junit" / "add.xml"),  # an absolute path: the project is mounted at its own path
        cwd=project,
        docker_host=docker_api,
    )
    assert done.returncode == 0, done.stderr
    # streamed from the container, each to its stream
    assert f"gradci {__version__}: 4 tests over 2 ops on cpu" in done.stderr
    assert "== 4 passed" in done.stdout
    outcomes = _testcases(project / "junit" / "add.xml")
    assert outcomes == dict.fromkeys(
        [
            "test_fn_grad_add_cpu_float64",
            "test_fn_grad_add_cpu_complex128",
            "test_fn_grad_mul_cpu_float64",
            "test_fn_grad_mul_cpu_complex128",
        ],
        "passed",
    )
    assert (project / "gradci-results.json").stat().st_uid == os.getuid()
    # Nothing is left behind.
    leftover = _podman("ps", "-a", "--filter", "label=io.github.gradci.command=container", "-q").stdout
    assert leftover.strip() == ""


def test_gradci_container_returns_gradcis_exit_code_and_error(
    image: str, docker_api: str, tmp_path: Path
) -> None:
    done = _gradci(
        "container", "--image", image, "run", "--ops", "no_such_op*", cwd=tmp_path, docker_host=docker_api
    )
    assert done.returncode == 2
    assert done.stderr.startswith("gradci: error: op pattern 'no_such_op*' matches no operator")


def test_gradci_container_passes_gradci_environment(image: str, docker_api: str, tmp_path: Path) -> None:
    env_file = tmp_path / ".gradci.yml"
    env_file.write_text("checks: grad\n")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "gradci",
            "container",
            "--image",
            image,
            "-e",
            "EXTRA=1",
            "list",
            "--ops",
            "add",
        ],
        cwd=tmp_path,
        env={**os.environ, "DOCKER_HOST": docker_api, "GRADCI_DTYPES": "float64"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    # the config file (mounted project) and GRADCI_DTYPES (forwarded) both apply inside
    assert done.stdout.split() == ["test_fn_grad_add_cpu_float64"]


def test_gradci_container_missing_image_is_one_line_exit_5(docker_api: str, tmp_path: Path) -> None:
    done = _gradci(
        "container",
        "--image",
        "localhost/gradci:no-such-tag",
        "--pull",
        "never",
        "--",
        "--version",
        cwd=tmp_path,
        docker_host=docker_api,
    )
    assert done.returncode == 5
    assert done.stderr.splitlines() == [
        "gradci: error: image localhost/gradci:no-such-tag is not available locally "
        "(pull or build it, or use --pull missing)"
    ]


@pytest.mark.parametrize("where", ["config", "environment"])
def test_gradci_container_image_from_config_or_environment(
    docker_api: str, tmp_path: Path, where: str
) -> None:
    image = f"localhost/gradci:from-{where}"
    env = {"DOCKER_HOST": docker_api}
    if where == "config":
        (tmp_path / ".gradci.yml").write_text(f"image: {image}\n")
    else:
        env["GRADCI_IMAGE"] = image
    done = subprocess.run(
        [sys.executable, "-m", "gradci", "container", "--pull", "never", "--", "--version"],
        cwd=tmp_path,
        env={**{k: v for k, v in os.environ.items() if not k.startswith("GRADCI_")}, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 5
    assert f"image {image} is not available locally" in done.stderr


@pytest.mark.skipif(shutil.which("docker") is None, reason="no docker CLI on this machine")
def test_docker_cli_through_podman(image: str, docker_api: str, tmp_path: Path) -> None:
    """The README's line, with the docker CLI itself (talking to podman's Docker API)."""
    project = _owned_dir(tmp_path / "project", *CALLER)
    done = subprocess.run(
        [
            *("docker", "run", "--rm", "--user", f"{CALLER[0]}:{CALLER[1]}", "-v", f"{project}:/work"),
            *(image, "run", "--ops", "sub", "--checks", "grad,gradgrad", "--junit", "/work/out.xml"),
        ],
        env={**os.environ, "DOCKER_HOST": docker_api},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert _testcases(project / "out.xml")["test_fn_gradgrad_sub_cpu_float64"] == "passed"
    assert (project / "out.xml").stat().st_uid == CALLER[0]


CUDA_TORCH = "2.14.1"  # a CUDA build, with its nvidia wheels, on this machine's disk


@pytest.fixture(scope="module")
def cuda_image(engine: None) -> Iterator[str]:
    """The cuda variant (about 7 GB), removed after its tests."""
    tag = _build(IMAGE + "-cuda", "VARIANT=cuda", f"TORCH_VERSION={CUDA_TORCH}", torch_version=CUDA_TORCH)
    yield tag
    _podman("rmi", "--force", tag, check=False)


def test_cuda_variant_checks_on_cpu_and_refuses_cuda_in_one_line(cuda_image: str, tmp_path: Path) -> None:
    """No GPU here: the CUDA image still runs the checks on the CPU, and --device cuda ends with the
    documented one-line error (exit 2), not a traceback."""
    labels = json.loads(_podman("image", "inspect", cuda_image).stdout)[0]["Config"]["Labels"]
    assert labels["io.github.gradci.variant"] == "cuda" and labels["io.github.gradci.torch"] == CUDA_TORCH
    project = _owned_dir(tmp_path / "project", *CALLER)
    volume = f"{project}:/work"
    user = f"{CALLER[0]}:{CALLER[1]}"
    done = _podman(
        "run", "--rm", "--user", user, "-v", volume, cuda_image,
        "run", "--ops", "add", "--checks", "grad", "--progress", "none",
    )  # fmt: skip
    results = json.loads((project / "gradci-results.json").read_text())
    assert results["run"]["torch_version"].startswith(CUDA_TORCH + "+cu")
    assert results["run"]["device"] == "cpu" and results["summary"]["passed"] == 2, done.stdout
    refused = _podman(
        "run", "--rm", "--user", user, "-v", volume, cuda_image, "run", "--ops", "add", "--device", "cuda",
        check=False,
    )  # fmt: skip
    assert refused.returncode == 2, refused.stderr
    [error] = [line for line in refused.stderr.splitlines() if line.startswith("gradci: ")]
    torch_version = results["run"]["torch_version"]
    assert error.startswith(
        f"gradci: error: --device cuda: torch.cuda.is_available() is False (torch {torch_version}, built with CUDA 1"
    ), error
    assert "Traceback" not in refused.stderr
