"""``gradci container``: run a gradci command inside the gradci image, against the current directory.

The same as ``docker run --rm --user "$(id -u):$(id -g)" -v "$PWD:$PWD" -w "$PWD" IMAGE ARGS``, spoken
through the Docker Engine API (the ``docker`` SDK for Python, extra ``gradci[container]``), so any
engine that serves that API works: Docker, or podman's ``podman system service``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from types import FrameType
from typing import Any, BinaryIO

from . import __version__, docs
from .errors import EXIT_INTERRUPTED, ContainerError, UsageError

REPOSITORY = "ghcr.io/gradci/gradci"
PULL_POLICIES = ("missing", "always", "never")
# Mounting the project over one of these would hide the image's own files: use /work there instead.
_SYSTEM_DIRS = frozenset(
    {"bin", "boot", "dev", "etc", "lib", "lib32", "lib64", "libx32", "opt", "proc", "sbin", "sys", "usr"}
)


def default_image(gpus: bool) -> str:
    """The image of this very gradci version; the CUDA variant when GPUs are asked for."""
    return f"{REPOSITORY}:{__version__}" + ("-cuda" if gpus else "")


def mount_point(cwd: str) -> str:
    """Where the current directory appears in the container: the same path, so absolute paths in the
    arguments mean the same on both sides, unless that would shadow a system directory."""
    path = PurePosixPath(cwd)
    if not path.is_absolute() or len(path.parts) < 2 or path.parts[1] in _SYSTEM_DIRS or "\\" in cwd:
        return "/work"
    return str(path)


def caller_user() -> str | None:
    """``UID:GID`` of this process, so files the container writes belong to the caller."""
    getuid = getattr(os, "getuid", None)
    getgid = getattr(os, "getgid", None)
    if getuid is None or getgid is None:  # Windows: Docker Desktop maps ownership itself
        return None
    return f"{getuid()}:{getgid()}"


def parse_env(items: Sequence[str], environ: Mapping[str, str]) -> dict[str, str]:
    """The container's environment: every ``GRADCI_*`` variable of ours, then ``-e NAME[=VALUE]``."""
    env = {name: value for name, value in environ.items() if name.startswith("GRADCI_")}
    for item in items:
        name, sep, value = item.partition("=")
        if not name or any(c.isspace() for c in name):
            raise UsageError(f"--env {item!r}: expected NAME or NAME=VALUE")
        if sep:
            env[name] = value
        elif name in environ:
            env[name] = environ[name]
    return env


@dataclass(frozen=True)
class ContainerRun:
    """One ``gradci container`` invocation, engine-independent."""

    image: str
    args: tuple[str, ...]
    cwd: str
    gpus: bool = False
    user: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    pull: str = "missing"
    tty: bool = False

    def create_options(self) -> dict[str, Any]:
        """Keyword arguments of ``client.containers.create``."""
        from docker.types import DeviceRequest, Mount

        target = mount_point(self.cwd)
        options: dict[str, Any] = {
            "command": list(self.args),
            "working_dir": target,
            "mounts": [Mount(target=target, source=self.cwd, type="bind", read_only=False)],
            "environment": dict(self.env),
            "tty": self.tty,
            "detach": True,
            "labels": {"io.github.gradci.command": "container"},
        }
        if self.user is not None:
            options["user"] = self.user
        if self.gpus:
            options["device_requests"] = [DeviceRequest(count=-1, capabilities=[["gpu"]])]
        return options


def _connect() -> Any:
    try:
        import docker
    except ImportError:
        raise ContainerError(
            "the docker SDK for Python is not installed", hint="pip install 'gradci[container]'"
        ) from None
    where = os.environ.get("DOCKER_HOST") or "the default socket"
    try:
        return docker.from_env()
    except docker.errors.DockerException as exc:
        raise ContainerError(
            f"cannot reach a container engine at {where}: {_reason(exc)}",
            hint="start Docker, or point DOCKER_HOST at a Docker API socket such as podman's",
        ) from None


def _reason(exc: BaseException) -> str:
    """The useful part of a docker SDK error, on one line."""
    text = str(getattr(exc, "explanation", None) or exc)
    return " ".join(text.split())[:300]


def _ensure_image(client: Any, image: str, pull: str) -> None:
    from docker.errors import APIError, ImageNotFound

    if pull != "always":
        try:
            client.images.get(image)
            return
        except ImageNotFound:
            if pull == "never":
                raise ContainerError(
                    f"image {image} is not available locally", hint="pull or build it, or use --pull missing"
                ) from None
        except APIError as exc:
            raise ContainerError(f"cannot inspect image {image}: {_reason(exc)}") from None
    print(f"gradci: pulling {image}", file=sys.stderr)
    try:
        client.images.pull(image)  # the SDK splits name, tag and digest itself
    except APIError as exc:
        raise ContainerError(
            f"image {image} is not available and cannot be pulled: {_reason(exc)}",
            hint=f"build it as {docs.url('container.md', 'building-it')} says, or pass --image",
        ) from None


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    def raise_interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, raise_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _stream(container: Any, tty: bool, stdout: BinaryIO, stderr: BinaryIO) -> None:
    if tty:
        for chunk in container.attach(stdout=True, stderr=True, stream=True, logs=True):
            stdout.write(chunk)
            stdout.flush()
        return
    for out, err in container.attach(stdout=True, stderr=True, stream=True, logs=True, demux=True):
        for data, sink in ((out, stdout), (err, stderr)):
            if data:
                sink.write(data)
                sink.flush()


def run(spec: ContainerRun) -> int:
    """Run ``gradci ARGS`` in the image; stream its output; return its exit code."""
    client = _connect()  # first: without the docker SDK it says how to install it
    from docker.errors import APIError

    _ensure_image(client, spec.image, spec.pull)
    try:
        container = client.containers.create(spec.image, **spec.create_options())
    except APIError as exc:
        raise ContainerError(f"cannot create a container from {spec.image}: {_reason(exc)}") from None
    try:
        try:
            container.start()
        except APIError as exc:
            hint = "GPUs need the NVIDIA Container Toolkit on the host" if spec.gpus else None
            raise ContainerError(f"cannot start {spec.image}: {_reason(exc)}", hint=hint) from None
        with _sigterm_as_interrupt():
            try:
                _stream(container, spec.tty, sys.stdout.buffer, sys.stderr.buffer)
                status = container.wait()
            except KeyboardInterrupt:
                # gradci in the container ends like on Ctrl-C: it writes the finished tests' results.
                with contextlib.suppress(Exception):
                    container.kill(signal="SIGINT")
                    container.wait(timeout=60)
                return EXIT_INTERRUPTED
        error = status.get("Error")
        if isinstance(error, dict) and error.get("Message"):
            raise ContainerError(f"the container failed: {error['Message']}")
        return int(status.get("StatusCode", 1))
    finally:
        with contextlib.suppress(Exception):
            container.remove(force=True)


def command(
    gradci_args: Sequence[str],
    *,
    image: str | None,
    gpus: bool,
    pull: str,
    user: str | None,
    env: Sequence[str],
) -> int:
    """``gradci container [options] [--] GRADCI_ARGS``."""
    args = list(gradci_args)
    if args[:1] == ["--"]:
        args = args[1:]
    spec = ContainerRun(
        image=image or default_image(gpus),
        args=tuple(args),
        cwd=str(Path.cwd()),
        gpus=gpus,
        user=user or caller_user(),
        env=parse_env(env, os.environ),
        pull=pull,
        tty=sys.stdout.isatty(),
    )
    return run(spec)
