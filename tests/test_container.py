"""``gradci container`` without an engine: what it asks the engine for, and its errors.

The runs against a real engine (podman serving the Docker API) are in tests/container/ (slow).
"""

from __future__ import annotations

import os
import socket
import threading
from pathlib import Path

import pytest
from docker.types import DeviceRequest

from gradci import __version__
from gradci.container import ContainerRun, caller_user, default_image, mount_point, parse_env
from gradci.errors import UsageError


def test_default_image_follows_the_version_and_variant() -> None:
    assert default_image(gpus=False) == f"ghcr.io/gradci/gradci:{__version__}"
    assert default_image(gpus=True) == f"ghcr.io/gradci/gradci:{__version__}-cuda"


@pytest.mark.parametrize(
    ("cwd", "target"),
    [
        ("/home/me/project", "/home/me/project"),
        ("/tmp/x", "/tmp/x"),
        ("/work", "/work"),
        ("/usr/src/project", "/work"),  # would shadow the image's /usr
        ("/opt/proj", "/work"),  # the image's venv lives in /opt
        ("/", "/work"),
        ("C:\\Users\\me", "/work"),
    ],
)
def test_mount_point(cwd: str, target: str) -> None:
    assert mount_point(cwd) == target


def test_create_options_mount_user_env_and_gpus() -> None:
    spec = ContainerRun(
        image="img:1",
        args=("run", "--ops", "add"),
        cwd="/home/me/p",
        gpus=True,
        user="1234:99",
        env={"GRADCI_WORKERS": "2"},
    )
    options = spec.create_options()
    assert options["command"] == ["run", "--ops", "add"]
    assert options["working_dir"] == "/home/me/p"
    [mount] = options["mounts"]
    assert (mount["Source"], mount["Target"], mount["Type"], mount["ReadOnly"]) == (
        "/home/me/p",
        "/home/me/p",
        "bind",
        False,
    )
    assert options["user"] == "1234:99"
    assert options["environment"] == {"GRADCI_WORKERS": "2"}
    # docker run --gpus all
    assert options["device_requests"] == [DeviceRequest(count=-1, capabilities=[["gpu"]])]
    assert "device_requests" not in ContainerRun(image="i", args=(), cwd="/w").create_options()


def test_caller_user_is_this_process() -> None:
    assert caller_user() == f"{os.getuid()}:{os.getgid()}"


def test_parse_env_passes_gradci_variables_and_explicit_ones() -> None:
    environ = {"GRADCI_OPS": "add", "HOME": "/root", "TOKEN": "x", "PATH": "/bin"}
    assert parse_env(["TOKEN", "A=1=2", "MISSING"], environ) == {
        "GRADCI_OPS": "add",
        "TOKEN": "x",
        "A": "1=2",
    }
    with pytest.raises(UsageError):
        parse_env(["=1"], environ)


def test_no_engine_is_one_line_and_exit_5(run_gradci, tmp_path: Path) -> None:
    done = run_gradci(
        "container", "--", "run", "--ops", "add", env={"DOCKER_HOST": f"unix://{tmp_path}/none.sock"}
    )
    assert done.returncode == 5
    [line] = done.stderr.splitlines()
    assert line.startswith(f"gradci: error: cannot reach a container engine at unix://{tmp_path}/none.sock: ")
    assert "Traceback" not in done.stderr


def test_engine_that_is_not_docker_is_one_line_and_exit_5(run_gradci, tmp_path: Path) -> None:
    """Something answers on DOCKER_HOST, but not the Docker API."""
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(4)
    port = server.getsockname()[1]

    def answer() -> None:
        for _ in range(4):
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                conn.recv(65536)
                conn.sendall(
                    b"HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\nConnection: close\r\n\r\nnot found"
                )

    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    try:
        done = run_gradci("container", "--", "--version", env={"DOCKER_HOST": f"tcp://127.0.0.1:{port}"})
    finally:
        server.close()
    assert done.returncode == 5, done.stderr
    assert len(done.stderr.splitlines()) == 1
    assert done.stderr.startswith("gradci: error: ")
