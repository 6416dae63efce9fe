"""The layout is the architecture: these rules keep the process and safety boundaries where the
docs/architecture.md says they are."""

import ast
import dataclasses
import inspect
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "lotcontrol"

#: package -> what it may never import (dotted prefixes below lotcontrol)
FORBIDDEN = {
    "safety": ["vision", "site", "sim", "cli", "bench", "controller", "app", "store", "writer", "policy"],
    "site": ["vision", "sim", "cli", "bench", "controller", "app", "safety"],
    "vision": ["safety", "site", "sim", "cli", "bench", "controller", "app", "policy", "writer", "pins"],
    "policy": ["vision", "sim", "cli", "bench", "controller", "app", "safety", "pins"],
    "controller": ["vision", "sim", "cli", "bench", "app"],
    "writer": ["vision", "sim", "cli", "bench", "controller", "app"],
    "app": ["sim", "cli", "bench", "vision"],
    "pins": ["vision", "sim", "safety", "site", "controller", "app"],
    # the fleet talks MQTT for a lot (or the hub): it reads the controller's state, never drives an output
    "fleet": ["vision", "sim", "cli", "bench", "app", "controller", "safety", "site", "pins", "policy"],
    # the hub: its database and the publishing of residents; no face work, no lot
    "hub": ["vision", "sim", "cli", "bench", "app", "controller", "safety", "site", "pins", "policy", "writer"],
    "charging": ["vision", "sim", "cli", "bench", "controller", "app", "safety", "site", "store", "writer", "policy"],
    # the alerts: which events are alarms and the notify command; nothing of the lot's parts
    "alerts": ["vision", "sim", "cli", "bench", "controller", "app", "safety", "site", "pins", "policy", "fleet",
               "hub", "charging"],
    "expander": ["vision", "sim", "safety", "site", "controller", "app", "charging", "pins"],
    # the web console: its own process, talking to the controller only through the control socket
    "web": ["vision", "sim", "cli", "bench", "app", "controller", "safety", "site", "pins", "policy", "writer",
            "charging", "fleet", "hub", "expander"],
}
#: (importing module, imported module): the only exceptions, each with its reason
ALLOWED = {
    # the rig's scripted camera runs in the real vision worker behind the same FrameSource interface
    ("vision.camera", "sim.camera"),
    # the composition root starts the vision worker's supervisor (which never loads dlib itself)
    ("app", "vision.supervisor"),
    # the charging page's report per resident is `charging report`'s own (pure: sums over stored rows)
    ("web.charging", "charging.report"),
}


def imports(path: Path) -> list[str]:
    """Every lotcontrol module a file imports, anywhere in it, as a dotted name below lotcontrol."""
    module = ".".join(path.relative_to(PACKAGE).with_suffix("").parts)
    package = module.rsplit(".", 1)[0] if path.name != "__init__.py" else module
    if "." not in module and path.name != "__init__.py":
        package = ""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".") if package else []
                base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
                target = ".".join([*base, *([node.module] if node.module else [])])
                names = [target] if node.module else [f"{target}.{a.name}".lstrip(".") for a in node.names]
                found += names
            elif node.module and node.module.startswith("lotcontrol"):
                found.append(node.module.removeprefix("lotcontrol").lstrip("."))
        elif isinstance(node, ast.Import):
            found += [a.name.removeprefix("lotcontrol").lstrip(".") for a in node.names if a.name.startswith("lotcontrol")]
    return found


def modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        yield ".".join(path.relative_to(PACKAGE).with_suffix("").parts).removesuffix(".__init__"), path


def test_the_import_rules_hold():
    broken = []
    for module, path in modules():
        top = module.split(".")[0]
        for target in imports(path):
            if (module, target) in ALLOWED:
                continue
            for banned in FORBIDDEN.get(top, []):
                if target == banned or target.startswith(banned + "."):
                    broken.append(f"{module} imports {target} ({top}/ may not import {banned})")
    assert not broken, "\n".join(broken)


def test_the_rules_see_a_forbidden_import(tmp_path, monkeypatch):
    """The checker itself: a safety module that imports the vision package is caught."""
    fake = tmp_path / "lotcontrol"
    (fake / "safety").mkdir(parents=True)
    (fake / "safety" / "bad.py").write_text("from ..vision import faces\nfrom lotcontrol.site.gate import Gate\n")
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", fake)
    assert imports(fake / "safety" / "bad.py") == ["vision", "site.gate"]
    with pytest.raises(AssertionError, match="safety.bad imports vision"):
        test_the_import_rules_hold()


def test_production_code_imports_nothing_from_the_simulator():
    for module, path in modules():
        if module.split(".")[0] in ("sim", "cli", "bench", "demo"):
            continue
        sim = [t for t in imports(path) if t.startswith("sim") and (module, t) not in ALLOWED]
        assert not sim, f"{module} imports {sim}"


def test_the_controller_process_never_loads_the_face_stack():
    code = ("import sys, lotcontrol.app, lotcontrol.cli.run, lotcontrol.vision.supervisor; "
            "print(sorted(m for m in ('dlib', 'face_recognition', 'face_recognition_models') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_every_message_has_a_handler_and_every_command_both_ends():
    from lotcontrol import messages
    from lotcontrol.control_socket import REQUESTS
    from lotcontrol.controller import Controller

    types = {obj for _, obj in inspect.getmembers(messages, inspect.isclass)
             if dataclasses.is_dataclass(obj) and obj.__module__ == messages.__name__}
    assert types == set(Controller.HANDLERS)
    assert set(REQUESTS) == set(Controller.COMMANDS)
