"""The event types the package makes, read from its source where each event is made (the tests hold
lotcontrol.event_types.TYPES to it).

An event is made in one of three ways, each with its type as a string literal where it is made:

- a call of ``event``, ``log_event`` (the controller, the store, the fleet), or of an event's class
  (``EventJob``, ``Change``, ``Transition``, ``BayEvent``, ``Notice``), the type first
  (``"camera.restored" if ok else "camera.lost"`` counts both);
- a keyword ``event=`` or ``type=`` given to a function that makes one;
- a ``(type, details)`` pair handed to the controller (the door, the vision supervisor).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import lotcontrol

PACKAGE = Path(lotcontrol.__file__).resolve().parent
TYPE = re.compile(r"^[a-z_]+(\.[a-z_]+)+$")
MAKERS = {"event", "log_event", "EventJob", "Change", "Transition", "BayEvent", "Notice"}
KEYWORDS = {"event", "type"}


def _literals(node: ast.AST):
    if isinstance(node, ast.Constant) and isinstance(node.value, str) and TYPE.match(node.value):
        yield node.value
    elif isinstance(node, ast.IfExp):
        yield from _literals(node.body)
        yield from _literals(node.orelse)


def _types(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", None)
            if name in MAKERS and node.args:
                yield from _literals(node.args[0])
            for keyword in node.keywords:
                if keyword.arg in KEYWORDS:
                    yield from _literals(keyword.value)
        elif isinstance(node, ast.Tuple) and len(node.elts) == 2 and isinstance(node.elts[1], ast.Dict):
            yield from _literals(node.elts[0])


def scanned() -> tuple[str, ...]:
    """Every event type the package makes, sorted (benchmarks and the simulator left out)."""
    found: set[str] = set()
    for path in PACKAGE.rglob("*.py"):
        if path.relative_to(PACKAGE).parts[0] in ("bench", "sim"):
            continue
        found.update(_types(ast.parse(path.read_text(encoding="utf-8"), str(path))))
    return tuple(sorted(found))


