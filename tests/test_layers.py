"""The package's rooms are layered: a module imports only from its own room or rooms below."""

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PACKAGE = REPO / "hific_tf"
# Bottom first. A room is a sub-package or a top-level module; `hific_tf` itself, the public
# API, sits on top of all of them.
LAYERS = (
    ("hific_tf.errors", "hific_tf.configs", "hific_tf.progress"),
    ("hific_tf.nn",),
    ("hific_tf.coding",),
    ("hific_tf.storage",),
    ("hific_tf.evaluation",),
    ("hific_tf.training",),
    ("hific_tf.published",),
    ("hific_tf.codec",),
    ("hific_tf.cli",),
    ("hific_tf",),
)


def module_name(path: Path) -> str:
    """The dotted name of the module at `path`."""
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def room(module: str) -> tuple[str, int]:
    """The room that holds `module` and the room's layer (0 at the bottom)."""
    for layer, rooms in enumerate(LAYERS):
        for name in rooms:
            if module == name or (module.startswith(name + ".") and name != "hific_tf"):
                return name, layer
    raise AssertionError(f"{module} is in no room of LAYERS")


def imported_modules(path: Path) -> set[str]:
    """Every hific_tf module that `path` imports, at module level or inside functions."""
    modules = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            modules |= {alias.name for alias in node.names if alias.name.startswith("hific_tf")}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("hific_tf"):
            for alias in node.names:
                candidate = f"{node.module}.{alias.name}"
                is_module = any((PACKAGE.parent / candidate.replace(".", "/")).with_suffix(suffix)
                                .exists() for suffix in (".py", ""))
                modules.add(candidate if is_module else node.module)
    return modules


def test_every_module_is_in_a_room():
    for path in PACKAGE.rglob("*.py"):
        room(module_name(path))


def test_no_module_imports_from_a_room_above_it():
    upward = []
    for path in sorted(PACKAGE.rglob("*.py")):
        importer = module_name(path)
        importer_room, importer_layer = room(importer)
        for imported in sorted(imported_modules(path)):
            imported_room, imported_layer = room(imported)
            if imported_layer > importer_layer or (imported_layer == importer_layer
                                                   and imported_room != importer_room):
                upward.append(f"{importer} imports {imported}")
    assert upward == []
