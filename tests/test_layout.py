"""The package's imports run one way: data -> models / losses -> train -> eval -> pipeline,
predict -> cli, with the small shared modules (io, progress, metrics, config) on the floor and
the experiment-file reader (experiment, which builds configs) one step above it."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "ser_cl"
FLOOR = ("io", "progress", "metrics", "config")
RANK = {**{name: 0 for name in FLOOR}, "experiment": 1, "data": 1, "models": 2, "losses": 2, "train": 3, "eval": 4,
        "pipeline": 5, "predict": 5, "cli_style": 5, "cli": 6}


def _room(module: str) -> str:
    """``ser_cl.train.loop`` -> ``train``; ``ser_cl.io`` -> ``io``; ``ser_cl`` -> ``""``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _imports(path: Path):
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "ser_cl":
            yield node.module, node.lineno
        elif isinstance(node, ast.Import):
            yield from ((alias.name, node.lineno) for alias in node.names if alias.name.split(".")[0] == "ser_cl")


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
            target = _room(module)
            if target == room or target == "":  # within the room; the package's own __init__
                continue
            if RANK[target] >= RANK[room]:
                wrong.append(f"ser_cl/{rel}:{line} ({room}) imports {module} ({target})")
    assert not wrong, "\n".join(wrong)
