"""The layering: `proxy/` (the engine) imports nothing from `web_ui/` or `tray/`, and `web_ui/` nothing from `tray/`.

Every .py file of the three packages is parsed with `ast`; every import counts, wherever it is (module level, inside
a function or an `if TYPE_CHECKING:` block), relative imports resolved, and `importlib.import_module("…")` /
`__import__("…")` with a literal name too. The composition roots (`tray/app.py`, `tray/cli/`) hand the lower layers
what they need from above (e.g. the OAuth callback server, `proxy.auth.callback.CallbackServerFactory`).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

#: package → the top-level packages it must never import
FORBIDDEN = {
    "proxy": frozenset({"web_ui", "tray"}),
    "web_ui": frozenset({"tray"}),
}


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(
    source: str, module: str, *, is_package: bool, runtime_only: bool = False
) -> list[tuple[int, str]]:
    """(line, absolute module name) for every import in `source`, the file of `module`. With `runtime_only`, the
    imports under `if TYPE_CHECKING:` (which never run) are left out."""
    found: list[tuple[int, str]] = []
    package = module.split(".") if is_package else module.split(".")[:-1]
    tree = ast.parse(source)
    type_only: set[int] = set()
    if runtime_only:
        for node in ast.walk(tree):
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                type_only.update(id(n) for n in ast.walk(node))
    for node in ast.walk(tree):
        if id(node) in type_only:
            continue
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)] if node.level > 1 else package
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            found.append((node.lineno, target))
            # `from . import web_ui`-style: the names may be modules too
            found += [
                (node.lineno, f"{target}.{alias.name}" if target else alias.name) for alias in node.names
            ]
        elif isinstance(node, ast.Call) and node.args:
            func = node.func
            name = (
                func.attr
                if isinstance(func, ast.Attribute)
                else func.id
                if isinstance(func, ast.Name)
                else ""
            )
            first = node.args[0]
            if name in ("import_module", "__import__") and isinstance(first, ast.Constant):
                if isinstance(first.value, str):
                    found.append((node.lineno, first.value))
    return found


def violations(root: Path) -> list[str]:
    problems: list[str] = []
    for package, forbidden in FORBIDDEN.items():
        for path in sorted((root / package).rglob("*.py")):
            module = module_name(path, root)
            source = path.read_text(encoding="utf-8")
            reported: set[int] = set()
            for line, target in imported_modules(source, module, is_package=path.name == "__init__.py"):
                top = target.split(".", 1)[0]
                if top in forbidden and line not in reported:
                    reported.add(line)
                    problems.append(f"{path.relative_to(root)}:{line}: {package} imports {target}")
    return problems


def test_lower_layers_never_import_upper_ones() -> None:
    assert violations(ROOT) == []


def test_every_package_is_scanned() -> None:
    for package in (*FORBIDDEN, "tray"):
        assert len(list((ROOT / package).rglob("*.py"))) > 3, package


@pytest.mark.parametrize(
    ("where", "source"),
    [
        ("proxy/engine.py", "import web_ui.callback\n"),
        ("proxy/engine.py", "from tray.app import build_services\n"),
        ("proxy/auth/flows.py", "def f():\n    from web_ui.callback import CallbackServer\n"),
        ("proxy/auth/flows.py", "if TYPE_CHECKING:\n    from tray import cli\n"),
        ("proxy/auth/flows.py", "from ... import web_ui\n"),
        ("proxy/auth/__init__.py", "from tray import cli\n"),
        ("proxy/relay/client.py", "import importlib\nimportlib.import_module('web_ui.agents')\n"),
        ("web_ui/views/chatgpt.py", "class X:\n    def m(self):\n        import tray.cli\n"),
    ],
)
def test_the_check_catches_each_kind_of_import(tmp_path: Path, where: str, source: str) -> None:
    for package in ("proxy", "web_ui", "tray"):
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text("")
    target = tmp_path / where
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(source)
    assert len(violations(tmp_path)) >= 1


def test_allowed_directions_pass(tmp_path: Path) -> None:
    for package in ("proxy", "web_ui", "tray"):
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text("")
    (tmp_path / "web_ui" / "callback.py").write_text("from proxy.auth.callback import CallbackPage\n")
    (tmp_path / "tray" / "app.py").write_text(
        "from web_ui.callback import CallbackServer\nimport proxy.engine\n"
    )
    (tmp_path / "proxy" / "engine.py").write_text("from .auth import TokenManager\nfrom . import tasks\n")
    (tmp_path / "proxy" / "auth").mkdir()
    (tmp_path / "proxy" / "auth" / "__init__.py").write_text(
        "from .. import keychain\nfrom .tray_like import x\n"
    )
    assert violations(tmp_path) == []
