"""The package's rooms and the doors between them, read from the source (every import,
at the top of a module or deferred inside a function).

- core (the modules directly in ``securecomm/``): no web framework, no HTTP client, and
  nothing from any folder;
- ``client/``: the core and httpx, nothing of the services, the local setup or the CLI;
- ``service/``: the core and the web stack; ``relay/`` and ``custodian/``: that and
  ``service/``, never each other, the client, the local setup or the CLI;
- ``local/``: the core and the client (it starts services as processes, never imports
  them); ``cli/`` may use any room;
- ``testing/``: imported only by tests and ``securecomm mitm`` (``cli/services.py``);
- and no import cycle anywhere in the package.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "src" / "securecomm"
FOLDERS = ("client", "service", "relay", "custodian", "local", "cli", "testing", "web")
THIRD_PARTY_WEB = {"flask", "werkzeug", "sqlalchemy", "gunicorn", "alembic", "psycopg"}


def _module_name(path: Path) -> str:
    parts = ["securecomm", *path.relative_to(PACKAGE).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Every module ``path`` imports, absolute, top level and deferred alike."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text("utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found.add(module)
            # `from package import submodule` imports the submodule.
            for alias in node.names:
                candidate = f"{module}.{alias.name}"
                if _exists(candidate):
                    found.add(candidate)
    return found


def _exists(module: str) -> bool:
    if not module.startswith("securecomm"):
        return False
    relative = Path(*module.split(".")[1:]) if "." in module else Path()
    return (PACKAGE / relative).with_suffix(".py").exists() or (
        PACKAGE / relative / "__init__.py"
    ).exists()


MODULES = {
    _module_name(path): _imports(path)
    for path in sorted(PACKAGE.rglob("*.py"))
    if "web" not in path.relative_to(PACKAGE).parts
}


def _room(module: str) -> str:
    if module == "securecomm.__main__":
        return "cli"  # the command's entry point
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in FOLDERS else "core"


def _rooms_imported(module: str) -> set[str]:
    return {_room(m) for m in MODULES[module] if m.startswith("securecomm.")} - {_room(module)}


def _third_party(module: str) -> set[str]:
    return {m.split(".")[0] for m in MODULES[module] if not m.startswith("securecomm")}


ALLOWED_ROOMS = {
    "core": set(),
    "client": {"core"},
    "service": {"core"},
    "relay": {"core", "service"},
    "custodian": {"core", "service"},
    "local": {"core", "client"},
    "testing": {"core", "client"},
    "cli": {"core", "client", "service", "relay", "custodian", "local", "testing"},
}


@pytest.mark.parametrize("module", sorted(MODULES))
def test_each_module_imports_only_the_rooms_its_own_may(module: str) -> None:
    room = _room(module)
    assert _rooms_imported(module) <= ALLOWED_ROOMS[room], (
        f"{module} ({room}) imports {sorted(_rooms_imported(module) - ALLOWED_ROOMS[room])}"
    )
    if room in {"core", "client", "local", "testing"}:
        assert not _third_party(module) & THIRD_PARTY_WEB, f"{module} imports the web stack"
    if room == "core":
        assert "httpx" not in _third_party(module), f"{module}: the core makes no HTTP calls"


def test_only_the_mitm_command_imports_testing() -> None:
    importers = sorted(
        m for m in MODULES if _room(m) != "testing" and "testing" in _rooms_imported(m)
    )
    assert importers == ["securecomm.cli.services"]


def test_there_is_no_import_cycle() -> None:
    graph = {m: {i for i in imports if i in MODULES and i != m} for m, imports in MODULES.items()}
    # A package's __init__ re-exporting its own submodules is not a cycle of dependence.
    for module, imports in graph.items():
        graph[module] = {i for i in imports if not module.startswith(i + ".")}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(module: str) -> None:
        state[module] = 1
        stack.append(module)
        for target in sorted(graph[module]):
            if state.get(target) == 1:
                cycle = [*stack[stack.index(target) :], target]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if target not in state:
                visit(target)
        stack.pop()
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module)


def test_the_rule_catches_what_it_should() -> None:
    """The checks above are only worth something if they see these imports."""
    assert "securecomm.service.app" in MODULES["securecomm.relay.app"]
    assert "securecomm.client.transport" in MODULES["securecomm.client.flows"]
    assert "securecomm.testing.mitm" in MODULES["securecomm.cli.services"]  # deferred
    assert "flask" in _third_party("securecomm.service.app")
    assert _room("securecomm.envelope") == "core"
    assert _room("securecomm.custodian.policy") == "custodian"
