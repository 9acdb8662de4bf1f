"""The package's imports run one way: data -> models / losses -> train -> eval -> pipeline,
predict -> cli, with the small shared modules (io, progress, metrics, config) on the floor and
the experiment-file reader (experiment, which builds configs) one step above it. linear_svm (the
SVM with C chosen on validation, shared by train's baseline and eval's probe) sits just above the
floor: it uses metrics. Within a room too, no module imports one that imports it back: the module
import graph has no circles, imports inside functions included."""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "ser_cl"
FLOOR = ("io", "progress", "metrics", "config")
RANK = {**{name: 0 for name in FLOOR}, "linear_svm": 0.5, "experiment": 1, "data": 1, "models": 2, "losses": 2,
        "train": 3, "eval": 4, "pipeline": 5, "predict": 5, "launch": 5.5, "cli": 6}


def _room(module: str) -> str:
    """``ser_cl.train.loop`` -> ``train``; ``ser_cl.io`` -> ``io``; ``ser_cl`` -> ``""``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _module_name(path: Path) -> tuple[str, str]:
    """(dotted module name, its package) of a file under PACKAGE: ``data/audio.py`` ->
    (``ser_cl.data.audio``, ``ser_cl.data``); ``data/__init__.py`` -> (``ser_cl.data``, ``ser_cl.data``)."""
    parts = [PACKAGE.name, *path.relative_to(PACKAGE).with_suffix("").parts]
    if parts[-1] == "__init__":
        parts.pop()
        return ".".join(parts), ".".join(parts)
    return ".".join(parts), ".".join(parts[:-1])


def _resolve(node: ast.ImportFrom, package: str) -> str:
    """The absolute module a ``from`` import reads: ``from ..train import x`` in ``ser_cl.data``
    -> ``ser_cl.train``, as ``importlib.util.resolve_name`` does it."""
    if not node.level:
        return node.module or ""
    base = package.split(".")
    if node.level - 1 >= len(base):
        return f"<beyond the top-level package: {'.' * node.level}{node.module or ''}>"
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _imports(path: Path):
    """(absolute module, line) for every import of the package in ``path``, relative ones resolved
    against the file's package; ``from ser_cl import train`` (or ``from .. import train``) counts as
    importing ``ser_cl.train``."""
    _, package = _module_name(path)
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            module = _resolve(node, package)
            if module.startswith("<"):
                yield module, node.lineno
            elif module == PACKAGE.name:  # names imported from the package root may be its rooms
                yield from ((f"{module}.{alias.name}", node.lineno) for alias in node.names)
            elif module.split(".")[0] == PACKAGE.name:
                yield module, node.lineno
        elif isinstance(node, ast.Import):
            yield from ((alias.name, node.lineno) for alias in node.names if alias.name.split(".")[0] == PACKAGE.name)


def test_every_room_is_ranked():
    rooms = {p.stem if p.parent == PACKAGE else p.relative_to(PACKAGE).parts[0] for p in PACKAGE.rglob("*.py")}
    assert rooms - {"__init__"} <= set(RANK), sorted(rooms - set(RANK))


def test_imports_never_go_up_or_sideways():
    wrong = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE)
        room = rel.parts[0] if len(rel.parts) > 1 else path.stem
        if room == "__init__":
            continue
        for module, line in _imports(path):
            if module.startswith("<"):
                wrong.append(f"ser_cl/{rel}:{line} ({room}) imports {module}")
                continue
            target = _room(module)
            if target == room or target == "" or target not in RANK:  # within the room; the package's
                continue  # own __init__; a name from it (``from ser_cl import __version__``)
            if RANK[target] >= RANK[room]:
                wrong.append(f"ser_cl/{rel}:{line} ({room}) imports {module} ({target})")
    assert not wrong, "\n".join(wrong)


def test_relative_imports_are_resolved_and_checked(tmp_path, monkeypatch):
    """A synthetic package: relative imports that go up or sideways are caught like absolute ones;
    relative imports within a room, and down to the floor, pass."""
    files = {
        "__init__.py": "",
        "cli.py": "from .train import loop\n",  # down: fine
        "predict.py": "from .cli import app\n",  # predict (5) -> cli (6): up
        "io.py": "",
        "data/__init__.py": "",
        "data/audio.py": "",
        "data/ok.py": "from . import audio\nfrom .audio import load\nfrom .. import io\nfrom ..io import save\n",
        "data/fake.py": "import os\n\nfrom ..train import loop\n",  # data (1) -> train (3): up
        "models/__init__.py": "from .encoder import Encoder\nfrom ..losses import supcon\n",  # models -> losses: sideways
        "models/encoder.py": "from .. import eval as ev, io\n",  # models -> eval: up (a room imported by name)
        "train/__init__.py": "",
        "train/loop.py": "from ..models.encoder import Encoder\nfrom .step import x\n",  # fine
    }
    for name, text in files.items():
        path = tmp_path / "ser_cl" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", tmp_path / "ser_cl")
    with pytest.raises(AssertionError) as info:
        test_imports_never_go_up_or_sideways()
    message = str(info.value).split("\nassert ")[0]  # the checker's lines, not pytest's repr of the list
    wrong = re.findall(r"ser_cl/\S+:\d+ \(\w+\) imports \S+ \(\w+\)", message)
    assert [line.split(" imports ")[0] for line in wrong] == [
        "ser_cl/data/fake.py:3 (data)",
        "ser_cl/models/__init__.py:2 (models)",
        "ser_cl/models/encoder.py:1 (models)",
        "ser_cl/predict.py:1 (predict)",
    ], wrong
    assert "imports ser_cl.train (train)" in wrong[0] and "imports ser_cl.losses (losses)" in wrong[1]
    assert "imports ser_cl.eval (eval)" in wrong[2] and "imports ser_cl.cli (cli)" in wrong[3]


# -- no import circles --------------------------------------------------------------------------


def _module_graph() -> dict[str, set[str]]:
    """Every module of the package -> the package's modules it imports, anywhere in the file: at
    the top or inside a function (a lazy import still runs, and a circle through one still ties
    the two modules together). ``from X import name`` imports the module ``X.name`` when there is
    one, else ``X``; ``from ser_cl import __version__`` imports ``ser_cl`` (its ``__init__``).

    Importing ``a.b.c`` runs ``a/__init__`` and ``a/b/__init__`` first, but those edges are left
    out: a package's ``__init__`` re-exports its submodules, so every submodule would otherwise
    sit in a circle with it. A package's ``__init__`` is a node of its own (``ser_cl.data.corpora``).
    """
    files = {_module_name(path)[0]: path for path in sorted(PACKAGE.rglob("*.py"))}
    graph: dict[str, set[str]] = {}
    for module, path in files.items():
        _, package = _module_name(path)
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                base = _resolve(node, package)
                for alias in node.names:
                    if f"{base}.{alias.name}" in files:
                        targets.add(f"{base}.{alias.name}")
                    elif base in files:
                        targets.add(base)
            elif isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names if alias.name in files)
        graph[module] = targets - {module}
    return graph


def _circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One circle (``[a, b, ..., a]``) for each import edge that closes one, found depth-first."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []
    found: list[list[str]] = []

    def visit(module: str) -> None:
        state[module] = 1
        path.append(module)
        for target in sorted(graph.get(module, ())):
            if state.get(target) == 1:
                found.append(path[path.index(target):] + [target])
            elif target not in state:
                visit(target)
        path.pop()
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module)
    return found


def test_no_module_imports_a_module_that_imports_it_back():
    """No circle in the module import graph of the package, lazy imports included (e.g. eval's
    report and plots share their formatting through eval.table_format, not through each other)."""
    circles = _circles(_module_graph())
    assert not circles, "import circles:\n" + "\n".join(" -> ".join(circle) for circle in circles)


def test_circles_are_found_through_lazy_and_relative_imports(tmp_path, monkeypatch):
    files = {
        "__init__.py": "",
        "eval/__init__.py": "from .report import write_report\n",  # a package re-exporting: no circle
        "eval/report.py": "from .table_format import md\n\ndef write_report():\n    from . import plots\n",
        "eval/plots.py": "from ser_cl.eval.report import write_report\n",  # closes report -> plots -> report
        "eval/table_format.py": "",
        "data/__init__.py": "",
        "data/a.py": "import ser_cl.data.b\n",
        "data/b.py": "from .c import x\n",
        "data/c.py": "def f():\n    from ser_cl.data import a\n",  # a -> b -> c -> a
    }
    for name, text in files.items():
        path = tmp_path / "ser_cl" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", tmp_path / "ser_cl")
    assert _circles(_module_graph()) == [
        ["ser_cl.data.a", "ser_cl.data.b", "ser_cl.data.c", "ser_cl.data.a"],
        ["ser_cl.eval.report", "ser_cl.eval.plots", "ser_cl.eval.report"],  # reached through eval/__init__
    ]


# -- the data package's rooms (written by the data-rooms restructure) -----------------------------

# room of ser_cl.data -> the rooms it may import; each room's __init__ says the same ("May import:")
DATA_ROOMS = {
    "frontends": (),
    "corpora": ("frontends",),
    "splits": (),
    "stores": ("frontends", "corpora", "splits"),
    "batches": ("frontends", "corpora", "splits", "stores"),
}
# old import paths the documentation named (module at data's top -> its room): thin modules that
# hand back the moved module; nothing in the package imports them
DATA_OLD_PATHS = {"store": "stores", "features": "frontends", "normalize": "stores", "folds": "splits", "fold_files": "splits"}


def _data_imports(path: Path):
    """(absolute module, line) for every import of ``ser_cl.data`` in ``path``, relative ones
    resolved, lazy ones included; ``from ser_cl.data import stores`` counts as ``ser_cl.data.stores``."""
    _, package = _module_name(path)
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            module = _resolve(node, package)
            if module in ("ser_cl", "ser_cl.data"):
                yield from ((f"{module}.{alias.name}", node.lineno) for alias in node.names)
            else:
                yield module, node.lineno
        elif isinstance(node, ast.Import):
            yield from ((alias.name, node.lineno) for alias in node.names)


def _data_layout_problems() -> list:
    """One line per import that breaks the rooms' rule: a room importing a room it may not (up or
    sideways), anything in the package importing an old path, a module outside every room."""
    data = PACKAGE / "data"
    wrong = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE)
        in_data = rel.parts[0] == "data"
        room = rel.parts[1] if in_data and len(rel.parts) > 2 else None
        old_path = in_data and len(rel.parts) == 2 and rel.stem in DATA_OLD_PATHS
        if in_data and room is None and not old_path and rel.name != "__init__.py":
            wrong.append(f"ser_cl/{rel}: a module of ser_cl.data outside every room")
        if in_data and room is not None and room not in DATA_ROOMS:
            wrong.append(f"ser_cl/{rel}: in {room}/, which is not a room of DATA_ROOMS")
            continue
        for module, line in _data_imports(path):
            parts = module.split(".")
            if parts[:2] != ["ser_cl", "data"] or len(parts) < 3:
                continue
            target = parts[2]
            if target in DATA_OLD_PATHS and not (data / target).is_dir():
                if not old_path:
                    wrong.append(f"ser_cl/{rel}:{line} imports the old path {module} "
                                 f"(ser_cl.data.{DATA_OLD_PATHS[target]}.{target})")
            elif room is not None and target != room and target not in DATA_ROOMS[room]:
                wrong.append(f"ser_cl/{rel}:{line} ({room}) imports {module} ({target})")
    return wrong


def test_data_rooms_import_only_the_rooms_they_may():
    wrong = _data_layout_problems()
    assert not wrong, "\n".join(wrong)


def test_the_rooms_order_has_no_circle():
    seen = []
    for room, may in DATA_ROOMS.items():  # listed in import order: a room may import earlier rooms only
        assert set(may) <= set(seen), (room, may)
        seen.append(room)


def test_each_room_says_its_job_and_what_it_may_import():
    for room, may in DATA_ROOMS.items():
        doc = ast.get_docstring(ast.parse((PACKAGE / "data" / room / "__init__.py").read_text(encoding="utf-8")))
        assert doc and len(doc.split("May import:")[0].strip()) > 40, f"data/{room}/__init__.py: say the room's job"
        said = re.search(r"May import: ([^.(]*)", doc)
        assert said, f"data/{room}/__init__.py: no 'May import:' line"
        named = {n.strip() for n in said.group(1).split(",")} if not said.group(1).startswith("nothing") else set()
        assert named == set(may), (room, named, may)


def test_the_old_paths_are_the_moved_modules():
    import importlib

    for name, room in DATA_OLD_PATHS.items():
        assert importlib.import_module(f"ser_cl.data.{name}") is importlib.import_module(f"ser_cl.data.{room}.{name}")


def test_the_developers_map_names_every_data_module():
    text = (PACKAGE.parent / "docs" / "developers.md").read_text(encoding="utf-8")
    block = text[text.index("ser_cl/data/"):text.index("ser_cl/models/")]
    missing = [str(p.relative_to(PACKAGE)) for p in sorted((PACKAGE / "data").rglob("*.py"))
               if p.name != "__init__.py" and p.parent.name != "corpora" and p.name not in block]
    readers = [p.stem for p in sorted((PACKAGE / "data" / "corpora").glob("*.py"))
               if p.name != "__init__.py" and p.stem not in block]
    assert not missing and not readers, (missing, readers)


def test_a_planted_sideways_import_is_caught(tmp_path, monkeypatch):
    """A copy of the package passes; four imports planted in it are each caught: sideways between
    sibling rooms, up (relative and lazy), an old path, a module dropped outside every room."""
    import shutil

    copy = tmp_path / "ser_cl"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", copy)
    assert _data_layout_problems() == []
    planted = {
        "data/corpora/planted.py": "from ser_cl.data.splits.folds import Fold\n",  # sibling: sideways
        "data/frontends/planted.py": "def f():\n    from ..stores import store\n",  # up, relative, lazy
        "train/planted.py": "from ser_cl.data import store\n",  # an old path
        "data/planted.py": "",  # outside every room
    }
    for name, text in planted.items():
        (copy / name).write_text(text)
    assert _data_layout_problems() == [
        "ser_cl/data/corpora/planted.py:1 (corpora) imports ser_cl.data.splits.folds (splits)",
        "ser_cl/data/frontends/planted.py:2 (frontends) imports ser_cl.data.stores (stores)",
        "ser_cl/data/planted.py: a module of ser_cl.data outside every room",
        "ser_cl/train/planted.py:1 imports the old path ser_cl.data.store (ser_cl.data.stores.store)",
    ]
# -- end of the data package's rooms --
