"""The documentation's links: every relative link in the README and docs/ (and the other
Markdown files of the repository) names a file that exists, and an #anchor names a heading."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from conftest import REPO

LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
EXTERNAL = ("http://", "https://", "mailto:")


def markdown_files() -> list[Path]:
    skipped = {".git", ".venv", "out", "build"}
    return sorted(path for path in REPO.rglob("*.md")
                  if not skipped & set(path.relative_to(REPO).parts))


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower().replace("`", ""))
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    return {slug(line.lstrip("#")) for line in path.read_text().splitlines()
            if re.match(r"#{1,6} ", line)}


def test_the_front_page_and_docs_are_there():
    names = {str(path.relative_to(REPO)) for path in markdown_files()}
    assert {"README.md", "docs/training.md", "docs/format.md",
            "experiments/README.md"} <= names
    assert len((REPO / "README.md").read_text().splitlines()) <= 220


@pytest.mark.parametrize("path", markdown_files(), ids=lambda p: str(p.relative_to(REPO)))
def test_every_relative_link_resolves(path):
    broken = []
    for target in LINK.findall(path.read_text()):
        if target.startswith(EXTERNAL):
            continue
        file_part, _, anchor = target.partition("#")
        resolved = (path.parent / file_part).resolve() if file_part else path
        inside = resolved == REPO or REPO in resolved.parents
        missing_anchor = bool(anchor) and resolved.suffix == ".md" and resolved.is_file() \
            and anchor not in anchors(resolved)
        if not (inside and resolved.exists()) or missing_anchor:
            broken.append(target)
    assert broken == [], f"{path.relative_to(REPO)}: links that do not resolve: {broken}"
