"""Where gradci's documentation lives: the one place in the code that names the site.

A message that sends a user to the docs takes its address from ``url``, with the page as it is
named in ``docs/`` and a heading's anchor; tests/test_docs.py checks that each page and anchor
used exists in the built site.
"""

from __future__ import annotations

SITE = "https://gradci.github.io/gradci/"


def url(page: str, anchor: str = "") -> str:
    """The address of ``docs/PAGE`` on the site (``url("publishing.md", "base-results")``)."""
    if not page.endswith(".md") or "/" in page:
        raise ValueError(f"not a page of docs/: {page!r}")
    stem = page.removesuffix(".md")
    # mkdocs' directory URLs: docs/publishing.md is served at publishing/, index.md at the root
    path = "" if stem == "index" else f"{stem}/"
    return f"{SITE}{path}#{anchor}" if anchor else f"{SITE}{path}"
