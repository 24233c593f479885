"""No dead code in the package: every module-level name is used somewhere in the repository,
and every parameter of a public function is read by it."""

from __future__ import annotations

import ast
import re
from collections import Counter

from conftest import REPO

PACKAGE = REPO / "hific_tf"


def python_sources() -> dict[str, str]:
    return {str(path.relative_to(REPO)): path.read_text()
            for folder in ("hific_tf", "tests", "benchmarks", "experiments")
            for path in sorted((REPO / folder).rglob("*.py"))}


def module_level_names(tree: ast.Module) -> list[str]:
    names = []
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.ClassDef):
            names.append(node.name)
        elif isinstance(node, ast.Assign):
            names += [target.id for target in node.targets if isinstance(target, ast.Name)]
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.append(node.target.id)
    return [name for name in names if not name.startswith("__")]


def test_every_module_level_name_is_used():
    sources = python_sources()
    words = Counter(re.findall(r"\w+", "\n".join(sources.values())))
    unused = [f"{path}: {name}" for path, text in sources.items() if path.startswith("hific_tf")
              for name in module_level_names(ast.parse(text)) if words[name] < 2]
    assert unused == []


def test_every_parameter_of_a_public_function_is_read():
    unread = []
    for path, text in python_sources().items():
        if not path.startswith("hific_tf"):
            continue
        for node in ast.walk(ast.parse(text)):
            if not isinstance(node, ast.FunctionDef) or node.name.startswith("_"):
                continue
            read = {name.id for name in ast.walk(node) if isinstance(name, ast.Name)}
            unread += [f"{path}: {node.name}({argument.arg})"
                       for argument in node.args.args + node.args.kwonlyargs
                       if argument.arg not in ("self", "cls")
                       and not argument.arg.startswith("_") and argument.arg not in read]
    assert unread == []
