"""The event types lotcontrol logs, read from its own source: there is no second list to keep.

An event is made in one of three ways, each with its type as a string literal where it is made:

- a call of ``event``, ``log_event`` (the controller, the store, the fleet), or of an event's class
  (``EventJob``, ``Change``, ``Transition``, ``BayEvent``, ``Notice``), the type first
  (``"camera.restored" if ok else "camera.lost"`` counts both);
- a keyword ``event=`` or ``type=`` given to a function that makes one (``_status_command``);
- a ``(type, details)`` pair handed to the controller (the door, the vision supervisor).

``known()`` gathers them once, when ``events --type`` asks (0.4 s on a loaded 2-core machine); the
tests check that every event the package logs while they run is among them, so a new way of making
events cannot go unnoticed. ``matching(text)`` says whether ``events --type`` could match anything:
a type exactly, or a dotted prefix of one (``access`` for ``access.granted`` and ``access.denied``).
"""

from __future__ import annotations

import ast
import difflib
import functools
import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent
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


@functools.cache
def known() -> tuple[str, ...]:
    """Every event type the package makes, sorted (benchmarks and the simulator left out)."""
    found: set[str] = set()
    for path in PACKAGE.rglob("*.py"):
        if path.relative_to(PACKAGE).parts[0] in ("bench", "sim"):
            continue
        found.update(_types(ast.parse(path.read_text(encoding="utf-8"), str(path))))
    return tuple(sorted(found))


def matching(text: str, types: tuple[str, ...] | None = None) -> bool:
    """Whether ``text`` is a type or a dotted prefix of one (as ``Store.events`` filters)."""
    return any(t == text or t.startswith(text + ".") for t in (known() if types is None else types))


def close_to(text: str) -> list[str]:
    """The types and prefixes most like ``text`` (a misspelling), best first."""
    types = known()
    prefixes = {".".join(t.split(".")[:n]) for t in types for n in range(1, t.count(".") + 1)}
    return difflib.get_close_matches(text, sorted(prefixes | set(types)), n=4, cutoff=0.6)
