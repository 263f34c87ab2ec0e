"""The documentation: the site builds with ``mkdocs build --strict`` (every link and anchor checked),
the README is a short front door whose links work wherever it is shown (GitHub, PyPI), and every
place in the code that sends a user to the docs names a page and a heading that exist."""

from __future__ import annotations

import ast
import importlib.util
import os
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest
from conftest import REPO

from gradci import docs

DOCS = REPO / "docs"
README = REPO / "README.md"
GITHUB = "https://github.com/gradci/gradci/"
PAGES = sorted(p.name for p in DOCS.glob("*.md"))

# The two commands README keeps near the top; .ci/run runs the second.
RUN_COMMAND = (
    "python3 -m venv .venv && .venv/bin/pip install -q torch==2.13.0 -e . && "
    ".venv/bin/gradci run --ops 'add,mul,div*,cumsum,linalg.det*,nn.functional.gelu'"
)
TEST_COMMAND = "python3 -m venv .venv && .venv/bin/pip install -q torch==2.13.0 -e '.[dev]' && .venv/bin/python -m pytest"

needs_mkdocs = pytest.mark.skipif(
    importlib.util.find_spec("mkdocs") is None or importlib.util.find_spec("material") is None,
    reason="mkdocs and mkdocs-material are not installed (they are in the dev extra: pip install -e '.[dev]')",
)


def build(config: Path, site: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "mkdocs",
            "build",
            "--strict",
            "--config-file",
            str(config),
            "--site-dir",
            str(site),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        # mkdocs-material's notice about its successor, printed on every build, is no warning of ours
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )


class _HeadingIds(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if re.fullmatch(r"h[1-6]", tag):
            self.ids.update(v for k, v in attrs if k == "id" and v)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> dict[str, set[str]]:
    """The site built from the repository as it is: each page of docs/ -> its headings' ids."""
    if importlib.util.find_spec("mkdocs") is None or importlib.util.find_spec("material") is None:
        pytest.skip("mkdocs and mkdocs-material are not installed (the dev extra has them)")
    out = tmp_path_factory.mktemp("site")
    done = build(REPO / "mkdocs.yml", out)
    assert done.returncode == 0, f"mkdocs build --strict failed:\n{done.stdout}\n{done.stderr}"
    ids = {}
    for page in PAGES:
        stem = page.removesuffix(".md")
        html = out / ("index.html" if stem == "index" else f"{stem}/index.html")
        assert html.is_file(), f"docs/{page} was not built"
        parser = _HeadingIds()
        parser.feed(html.read_text())
        ids[page] = parser.ids
    return ids


def test_the_site_builds_strictly_and_every_page_has_its_title(site: dict[str, set[str]]) -> None:
    assert set(site) == set(PAGES)
    for page, ids in site.items():
        assert ids, f"docs/{page} has no headings"


@needs_mkdocs
@pytest.mark.parametrize(
    ("link", "complaint"),
    [("results.md#no-such-heading", "no-such-heading"), ("no-such-page.md", "no-such-page.md")],
)
def test_a_broken_link_or_anchor_fails_the_build(tmp_path: Path, link: str, complaint: str) -> None:
    project = tmp_path / "project"
    shutil.copytree(DOCS, project / "docs")
    shutil.copy2(REPO / "mkdocs.yml", project / "mkdocs.yml")
    with (project / "docs" / "cli.md").open("a") as page:
        page.write(f"\nSee [this]({link}).\n")
    done = build(project / "mkdocs.yml", tmp_path / "site")
    assert done.returncode != 0
    assert complaint in done.stdout + done.stderr


# -- the README -------------------------------------------------------------------------------


def test_readme_is_a_front_door() -> None:
    size = len(README.read_bytes())
    assert size <= 12_000, f"README.md is {size} bytes; keep it a front door and move the rest to docs/"


def test_readme_keeps_the_two_commands_and_ci_runs_the_second() -> None:
    readme = README.read_text()
    assert f"```sh\n{RUN_COMMAND}\n```" in readme
    assert f"```sh\n{TEST_COMMAND}\n```" in readme
    # near the top: before the first section
    assert max(readme.index(RUN_COMMAND), readme.index(TEST_COMMAND)) < readme.index("\n## ")
    assert TEST_COMMAND in (REPO / ".ci" / "run").read_text().splitlines()


def _links(markdown: str) -> list[str]:
    inline = re.findall(r"\]\(\s*<?([^)\s>]+)", markdown)
    references = re.findall(r"^\s*\[[^\]]+\]:\s*<?(\S+?)>?\s*$", markdown, re.M)
    html = re.findall(r"""(?:href|src)\s*=\s*["']([^"']+)""", markdown)
    return inline + references + html


def test_readme_links_are_absolute() -> None:
    """PyPI shows README.md without the repository around it: a relative link would lead nowhere."""
    links = _links(README.read_text())
    assert links
    relative = [link for link in links if not link.startswith("https://")]
    assert not relative, f"README.md has relative links: {relative}"


def _site_urls(text: str) -> list[tuple[str, str]]:
    """(page, anchor) of each address on the docs site in the text."""
    found = []
    for path, anchor in re.findall(re.escape(docs.SITE) + r"([\w/-]*)(?:#([\w-]+))?", text):
        stem = path.strip("/")
        assert "/" not in stem, f"{docs.SITE}{path}: the site has no nested pages"
        found.append((f"{stem or 'index'}.md", anchor))
    return found


def _repository_paths(text: str) -> list[str]:
    return re.findall(re.escape(GITHUB) + r"(?:blob|tree)/main/([\w./-]+?)(?=[)\s>\"'#]|$)", text)


def test_readme_and_docs_links_resolve(site: dict[str, set[str]]) -> None:
    """Links to the site name a page and a heading of it; links into the repository name what is there."""
    texts = {"README.md": README.read_text()} | {f"docs/{p}": (DOCS / p).read_text() for p in PAGES}
    assert _site_urls(texts["README.md"]), "README.md links to no page of the docs site"
    for name, text in texts.items():
        for page, anchor in _site_urls(text):
            assert page in site, f"{name} links to {page}, which docs/ lacks"
            assert not anchor or anchor in site[page], f"{name} links to {page}#{anchor}: no such heading"
        for path in _repository_paths(text):
            assert (REPO / path).exists(), f"{name} links to {path}, which the repository lacks"


# -- the code's pointers into the docs ---------------------------------------------------------


def _python_sources() -> dict[str, str]:
    """gradci's modules, and the Python the action's scripts run (their heredocs)."""
    sources = {str(p.relative_to(REPO)): p.read_text() for p in sorted((REPO / "gradci").rglob("*.py"))}
    for script in sorted((REPO / "action").glob("*.sh")):
        for i, block in enumerate(re.findall(r"<<\s*'?PY'?[^\n]*\n(.*?)\nPY\n", script.read_text(), re.S)):
            sources[f"{script.relative_to(REPO)} (heredoc {i + 1})"] = block
    return sources


def _url_calls() -> list[tuple[str, str, str]]:
    """(where, page, anchor) of every call of gradci.docs.url, whose arguments must be literal."""
    calls = []
    for where, source in _python_sources().items():
        for node in ast.walk(ast.parse(source)):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            named = (
                isinstance(func, ast.Attribute) and func.attr == "url" and ast.unparse(func.value) == "docs"
            ) or (isinstance(func, ast.Name) and func.id == "url" and "from gradci.docs import url" in source)
            if not named:
                continue
            args = [a.value for a in node.args if isinstance(a, ast.Constant) and isinstance(a.value, str)]
            assert len(args) == len(node.args) in (1, 2) and not node.keywords, (
                f"{where}:{node.lineno}: docs.url takes a literal page and anchor, so that this test can check them"
            )
            calls.append((where, args[0], args[1] if len(args) == 2 else ""))
    return calls


def _pointers() -> list[tuple[str, str, str]]:
    """Every pointer into the docs: url() calls, addresses on the site, and docs/PAGE.md#ANCHOR in text."""
    pointers = _url_calls()
    files = [
        *sorted((REPO / "gradci").rglob("*.py")),
        *sorted((REPO / "action").glob("*.sh")),
        REPO / "action.yml",
        REPO / "Dockerfile",
        REPO / "DEVELOPERS.md",
        *sorted(p for p in (REPO / "tests").rglob("*.py") if p.name != "test_docs.py"),
    ]
    for path in files:
        text = path.read_text()
        where = str(path.relative_to(REPO))
        pointers += [(where, page, anchor) for page, anchor in _site_urls(text)]
        pointers += [
            (where, page, anchor) for page, anchor in re.findall(r"\bdocs/([\w-]+\.md)(?:#([\w-]+))?", text)
        ]
    return pointers


def test_code_points_at_pages_that_exist() -> None:
    calls = _url_calls()
    # the messages of container.py, publish.py, artifacts.py and the action's torch check
    assert {where.split(" ")[0] for where, _, _ in calls} >= {
        "gradci/container.py",
        "gradci/github/publish.py",
        "gradci/github/artifacts.py",
        "action/install.sh",
    }
    for where, page, _ in _pointers():
        assert page in PAGES, f"{where} points at docs/{page}, which does not exist"


def test_code_points_at_headings_that_exist(site: dict[str, set[str]]) -> None:
    for where, page, anchor in _pointers():
        assert not anchor or anchor in site.get(page, ()), (
            f"{where} points at {page}#{anchor}: no such heading"
        )


def test_the_site_address_is_written_once() -> None:
    mentions = [
        str(p.relative_to(REPO))
        for p in sorted((REPO / "gradci").rglob("*.py"))
        if "gradci.github.io" in p.read_text()
    ]
    assert mentions == ["gradci/docs.py"]
    assert (REPO / "gradci" / "docs.py").read_text().count("gradci.github.io") == 1
    assert f"site_url: {docs.SITE}\n" in (REPO / "mkdocs.yml").read_text()


def test_url_gives_the_pages_address() -> None:
    assert docs.url("index.md") == docs.SITE
    assert docs.url("publishing.md") == f"{docs.SITE}publishing/"
    assert docs.url("publishing.md", "base-results") == f"{docs.SITE}publishing/#base-results"
    for bad in ("publishing", "docs/publishing.md", "publishing/"):
        with pytest.raises(ValueError, match="not a page of docs/"):
            docs.url(bad)


def test_every_option_is_documented_where_its_command_is() -> None:
    """The option table's flags in the docs' option tables: `run`'s on the CLI page, the rest
    (publish, baseline, container) on their commands' pages."""
    from gradci.options import OPTIONS

    pages = {
        "run": DOCS / "cli.md",
        "publish": DOCS / "publishing.md",
        "baseline": DOCS / "publishing.md",
        "container": DOCS / "container.md",
    }
    missing = []
    for option in OPTIONS:
        command = next((c for c in pages if c in option.commands), None)
        if command is None:
            continue
        rows = [line for line in pages[command].read_text().splitlines() if line.startswith("|")]
        if not any(f"`{option.flag}" in row for row in rows):
            missing.append(f"{option.flag} ({pages[command].name})")
    assert missing == []
