"""The documentation against the code. Every relative link in the Markdown files names a file
that exists, and an #anchor a heading. In the README and docs/: every flag named is defined,
by the command it is given to; the repository paths, tests, presets and models named in code
exist; the codec tables quote their summary.json; docs/architecture.md lists every module."""

from __future__ import annotations

import ast
import dataclasses
import fnmatch
import functools
import json
import os
import re
from pathlib import Path

import pytest

from hific_tf.configs import MODEL_PRESETS, TRAINING_PRESETS, TrainingRecipe, TrainingRun
from hific_tf.published import runner
from hific_tf.storage import zoo

from conftest import REPO

LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
EXTERNAL = ("http://", "https://", "mailto:")


def markdown_files() -> list[Path]:
    """The repository's own Markdown: the walk never enters outputs or tools' hidden folders
    (.git, .venv, .pytest_cache)."""
    found = []
    for folder, subfolders, names in os.walk(REPO):
        subfolders[:] = [name for name in subfolders
                         if not name.startswith(".") and name not in {"out", "build"}]
        found += [Path(folder) / name for name in names if name.endswith(".md")]
    return sorted(found)


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


def documentation_pages() -> list[Path]:
    """The README and docs/."""
    return [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


PAGES = pytest.mark.parametrize("path", documentation_pages(),
                                ids=lambda p: str(p.relative_to(REPO)))


def code(text: str) -> list[str]:
    """The lines of the fenced blocks in Markdown `text` (continuation lines joined) and its
    inline code spans."""
    fence = re.compile(r"^```[^\n]*\n(.*?)^```", flags=re.MULTILINE | re.DOTALL)
    lines = [line for block in fence.findall(text)
             for line in block.replace("\\\n", " ").splitlines()]
    return lines + re.findall(r"`([^`]+)`", fence.sub("", text))


# Flags: every `--flag` the README and docs/ name is one the code defines, and the flags of a
# `hific-tf COMMAND ...` or `SCRIPT.py ...` command line are that program's own.
FLAG = re.compile(r"(?<![\w-])--([a-z][a-z0-9_-]*[a-z0-9])")
OTHER_TOOLS_FLAGS = {"no_deps", "force_reinstall"}  # pip's, in the install instructions
COMMAND_LINE = re.compile(r"(?:hific-tf ([a-z]+)|([\w/]+\.py))\b([^#]*)")


def defined_flags(path: Path, seen: set[Path] | None = None) -> set[str]:
    """The absl and argparse flags that the module at `path` defines, with those of the
    hific_tf.cli modules it imports."""
    seen = set() if seen is None else seen
    seen.add(path)
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            function = getattr(node.func, "attr", getattr(node.func, "id", ""))
            if function.startswith("DEFINE_") or function == "add_argument":
                names.add(str(node.args[0].value).lstrip("-").replace("-", "_"))
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("hific_tf.cli"):
            modules = [node.module] if node.module != "hific_tf.cli" else \
                [f"hific_tf.cli.{alias.name}" for alias in node.names]
            for module in modules:
                imported = REPO / (module.replace(".", "/") + ".py")
                if imported.is_file() and imported not in seen:
                    names |= defined_flags(imported, seen)
    if path == REPO / "hific_tf" / "cli" / "train.py":  # one flag per configuration field
        names |= {field.name for config in (TrainingRecipe, TrainingRun)
                  for field in dataclasses.fields(config)}
    return names


@functools.cache
def program_flags() -> dict[str, frozenset[str]]:
    """`hific-tf COMMAND` and each script's path → the flags it takes."""
    programs = {f"hific-tf {path.stem}": path for path in (REPO / "hific_tf" / "cli").glob("*.py")}
    for folder in ("benchmarks", "experiments"):
        programs |= {str(path.relative_to(REPO)): path for path in (REPO / folder).rglob("*.py")}
    return {name: frozenset(defined_flags(path)) for name, path in programs.items()}


@PAGES
def test_every_flag_named_is_defined(path):
    known = set().union(*program_flags().values()) | OTHER_TOOLS_FLAGS
    unknown = sorted({f"--{name}" for name in FLAG.findall(path.read_text())
                      if name.replace("-", "_") not in known})
    assert unknown == [], f"{path.relative_to(REPO)} names flags no code defines: {unknown}"


@PAGES
def test_command_lines_use_their_own_flags(path):
    programs = program_flags()
    wrong = []
    for line in code(path.read_text()):
        for command, script, rest in COMMAND_LINE.findall(line):
            program = f"hific-tf {command}" if command else script
            if command and program not in programs:
                wrong.append(f"{program} (no such command)")
            elif program in programs:  # else a script named without its folder
                wrong += [f"{program} --{name}" for name in FLAG.findall(rest)
                          if name.replace("-", "_") not in programs[program] | {"help"}]
    assert wrong == [], f"{path.relative_to(REPO)}: flags their command does not take: {wrong}"


# Paths, tests and presets named in code spans exist.
REPO_PATH = re.compile(r"(?<![\w./-])((?:hific_tf|benchmarks|experiments|tests|docs|photos|"
                       r"\.ci)/[\w./*{},-]*[\w*}])")
TEST_REFERENCE = re.compile(r"(?:tests/)?(test_\w+\.py)::(\w+)")
PRESET_NAME = re.compile(r"(?<![\w/.-])((?:mselpips|hific|tiny|small)-[\w*/-]*[\w*])(?![\w.-])")
NOT_PRESETS = {"hific-tf", "small-models"}  # the command, the make target


def brace_expansions(path: str) -> list[str]:
    """`a.{json,csv}` → a.json, a.csv (one brace group)."""
    match = re.search(r"\{([^}]*)\}", path)
    if not match:
        return [path]
    return [path[:match.start()] + choice + path[match.end():]
            for choice in match.group(1).split(",")]


@PAGES
def test_every_repository_path_in_code_exists(path):
    missing = [name for span in code(path.read_text()) for found in REPO_PATH.findall(span)
               for name in brace_expansions(found)
               if not (REPO / name).exists() and not list(REPO.glob(name))]
    assert missing == [], f"{path.relative_to(REPO)} names paths that do not exist: {missing}"


@PAGES
def test_every_test_named_exists(path):
    missing = []
    for file, name in TEST_REFERENCE.findall(path.read_text()):
        test_file = REPO / "tests" / file
        if not test_file.is_file() or not re.search(rf"^def {name}\(", test_file.read_text(),
                                                    flags=re.MULTILINE):
            missing.append(f"{file}::{name}")
    assert missing == [], f"{path.relative_to(REPO)} names tests that do not exist: {missing}"


def preset_names(token: str) -> list[str]:
    """`hific-lo/-mi/-hi` and `hific-lo/mi/hi` → the three names; others as they are."""
    first, *others = token.split("/")
    stem = first.rsplit("-", 1)[0]
    return [first] + [stem + "-" + other.lstrip("-") for other in others]


@PAGES
def test_every_preset_or_model_name_exists(path):
    known = set(TRAINING_PRESETS) | set(MODEL_PRESETS) | set(zoo.bundled_names()) \
        | set(runner.MODEL_NAMES)
    unknown = [name for span in code(path.read_text()) for token in PRESET_NAME.findall(span)
               if token not in NOT_PRESETS for name in preset_names(token)
               if not fnmatch.filter(known, name)]
    assert unknown == [], f"{path.relative_to(REPO)} names presets or models that do not " \
                          f"exist: {unknown}"


# The tables of codec results (| codec | bpp | PSNR ...) quote the summary.json linked just
# before them, to the decimals they show.
TABLE_COLUMNS = {"bpp": "bpp", "PSNR (dB)": "psnr", "MS-SSIM": "ms_ssim", "LPIPS": "lpips",
                 "NIQE": "niqe", "FID/256": "fid", "KID/256": "kid"}


def results_tables(text: str) -> list[tuple[str, list[list[str]]]]:
    """(the summary.json linked in the 1 500 characters before, rows) per codec table."""
    tables = []
    for match in re.finditer(r"^\| codec \| bpp \|.*\n\|[-| ]+\n((?:\|.*\n)+)", text,
                             flags=re.MULTILINE):
        links = re.findall(r"\]\(([^)\s]*summary\.json)\)", text[max(0, match.start() - 1500):
                                                                match.start()])
        rows = [[cell.strip() for cell in line.strip().strip("|").split("|")]
                for line in match.group(1).splitlines()]
        if links:
            tables.append((links[-1], rows))
    return tables


def test_the_results_tables_are_found():
    pages = {path.name: results_tables(path.read_text()) for path in documentation_pages()}
    assert pages["README.md"] and pages["bundled-models.md"]


@PAGES
def test_results_tables_quote_their_summary(path):
    header = list(TABLE_COLUMNS)
    wrong = []
    for link, rows in results_tables(path.read_text()):
        summaries = json.loads((path.parent / link).read_text())["summaries"]
        for label, *cells in rows:
            codec = re.split(r"[ ,]", label.replace("`", ""))[0].lower()
            entries = [s for s in summaries if s["codec"] == codec]
            assert entries, f"{path.name}: no {codec} in {link}"
            entry = entries[1 if "twice" in label else 0]
            for column, cell in zip(header, cells, strict=True):
                decimals = len(cell.partition(".")[2])
                quoted = f"{entry[TABLE_COLUMNS[column]]:.{decimals}f}".replace("-", "−")
                if quoted.lstrip("−") != cell.lstrip("−-") or \
                        quoted.startswith("−") != cell.startswith(("−", "-")):
                    wrong.append(f"{label} {column}: {cell}, {link} says {quoted}")
    assert wrong == [], f"{path.relative_to(REPO)}: {wrong}"


# Every module of the package is in the layout of docs/architecture.md.
def test_the_layout_names_every_module():
    layout = (REPO / "docs" / "architecture.md").read_text()
    missing = [str(path.relative_to(REPO)) for path in sorted((REPO / "hific_tf").rglob("*.py"))
               if path.name != "__init__.py" and not re.search(rf"\b{path.name}\b", layout)]
    assert missing == [], f"docs/architecture.md's layout lacks {missing}"
