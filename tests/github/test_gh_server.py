"""The local GitHub is only worth its validation: show that it catches what GitHub would refuse,
and that the vendored OpenAPI subset is what ``vendor.py`` makes of the npm package."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from ghfake import SPEC_PATH, FakeGitHub, spec
from vendor import OPERATIONS, trim

HERE = Path(__file__).resolve().parent


@pytest.fixture
def server() -> Iterator[FakeGitHub]:
    fake = FakeGitHub().start()
    repo = fake.add_repo("o/r", id=1)
    repo.chain("main", 2)
    fake.add_token("t")
    yield fake
    fake.stop()


def test_a_request_gradci_could_send_wrongly_is_caught(server: FakeGitHub) -> None:
    headers = {"Authorization": "token t"}
    # no head_sha; 51 annotations; an unknown conclusion
    bad_bodies = [
        {"name": "gradci", "output": {"title": "t", "summary": "s"}},
        {
            "name": "gradci",
            "head_sha": "a" * 40,
            "output": {
                "title": "t",
                "summary": "s",
                "annotations": [
                    {
                        "path": "a",
                        "start_line": 1,
                        "end_line": 1,
                        "annotation_level": "failure",
                        "message": "m",
                    }
                ]
                * 51,
            },
        },
        {"name": "gradci", "head_sha": "a" * 40, "conclusion": "broken"},
        {"name": "gradci", "head_sha": "a" * 40, "output": {"title": "t", "summary": "s" * 65_536}},
    ]
    for body in bad_bodies:
        response = requests.post(f"{server.url}/repos/o/r/check-runs", json=body, headers=headers, timeout=10)
        assert response.status_code == 400
    assert len(server.problems) == 4
    assert "head_sha" in server.problems[0] and "too long" in server.problems[1]
    response = requests.get(f"{server.url}/repos/o/r/not-an-operation", headers=headers, timeout=10)
    assert response.status_code == 400 and "Path not found" in server.problems[4]
    server.problems.clear()


def test_a_response_that_breaks_the_schema_is_caught(
    server: FakeGitHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = FakeGitHub._comment_json

    def broken(self: FakeGitHub, r: object, c: object) -> dict[str, object]:
        data = original(self, r, c)  # type: ignore[arg-type]
        del data["user"]["login"]
        return data

    monkeypatch.setattr(FakeGitHub, "_comment_json", broken)
    server.repos["o/r"].pulls[1] = object()  # type: ignore[assignment]
    response = requests.post(
        f"{server.url}/repos/o/r/issues/1/comments", json={"body": "x"}, headers={"Authorization": "token t"}
    )
    assert response.status_code == 201
    assert len(server.problems) == 1 and "login" in server.problems[0]
    server.problems.clear()


def test_auth_and_permissions_behave_like_github(server: FakeGitHub) -> None:
    body = {"name": "gradci", "head_sha": server.repos["o/r"].branches["main"]}
    assert requests.post(f"{server.url}/repos/o/r/check-runs", json=body).status_code == 401
    server.add_token("ro", permissions={"checks": "read", "contents": "read"})
    denied = requests.post(
        f"{server.url}/repos/o/r/check-runs", json=body, headers={"Authorization": "Bearer ro"}
    )
    assert denied.status_code == 403 and denied.json()["message"] == "Resource not accessible by integration"
    assert server.problems == []


def test_the_subset_holds_exactly_the_operations_gradci_sends() -> None:
    data = json.loads(SPEC_PATH.read_text())
    kept = {
        (method, path)
        for path, item in data["paths"].items()
        for method in item
        if method in ("get", "post", "patch")
    }
    assert kept == set(OPERATIONS)
    assert data["info"]["x-gradci-subset"].startswith("@octokit/openapi@")
    assert spec()["components"]["schemas"]["check-run"]["title"] == "CheckRun"


def test_trim_keeps_referenced_components_transitively() -> None:
    full = {
        "openapi": "3.0.3",
        "info": {"title": "t", "version": "1"},
        "servers": [{"url": "https://api.github.com"}],
        "paths": {},
        "components": {
            "responses": {
                "r": {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/a"}}}}
            },
            "schemas": {
                "a": {"properties": {"b": {"$ref": "#/components/schemas/b"}}},
                "b": {"type": "string"},
                "unused": {"type": "string"},
                "basic-error": {"type": "object"},
                "validation-error": {"type": "object"},
            },
        },
    }
    for method, path in OPERATIONS:
        full["paths"].setdefault(path, {})[method] = {
            "responses": {"200": {"$ref": "#/components/responses/r"}}
        }
    trimmed = trim(full)
    assert set(trimmed["components"]["schemas"]) == {"a", "b", "basic-error", "validation-error"}
    assert set(trimmed["components"]["responses"]) == {"r"}


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("npm") is None, reason="npm is not installed")
def test_vendor_script_reproduces_the_vendored_files(tmp_path: Path) -> None:
    """Downloads both npm packages (about 30 MB) and regenerates the files into a copy."""
    copy = tmp_path / "github"
    copy.mkdir()
    shutil.copy(HERE / "vendor.py", copy / "vendor.py")
    subprocess.run([sys.executable, str(copy / "vendor.py")], check=True, timeout=600)
    assert (copy / "openapi-subset.json").read_bytes() == SPEC_PATH.read_bytes()
    for path in (HERE / "payloads").iterdir():
        assert (copy / "payloads" / path.name).read_bytes() == path.read_bytes(), path.name
