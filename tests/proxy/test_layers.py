"""Inside `proxy/`, packages only import downwards: the layers docs/architecture.md draws.

Every runtime import counts, lazy ones inside functions included; imports under `if TYPE_CHECKING:` do not (they
never run). `proxy.features.base`, the feature protocol, has no runtime imports of its own, so any layer may
implement it (the ChatGPT provider's keep-warm, the relay's transport).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.test_import_direction import imported_modules, module_name

ROOT = Path(__file__).resolve().parents[2]

#: lowest first; a package may import its own layer and the ones below
LAYERS: tuple[frozenset[str], ...] = (
    frozenset({"proxy", "proxy.durations", "proxy.tasks", "proxy.wire"}),
    frozenset({"proxy.config", "proxy.secrets", "proxy.logs"}),
    frozenset({"proxy.routing"}),
    frozenset({"proxy.providers"}),
    frozenset({"proxy.auth", "proxy.features", "proxy.relay", "proxy.analyzer", "proxy.shared"}),
    frozenset({"proxy.gateway", "proxy.status", "proxy.upkeep"}),
    frozenset({"proxy.engine"}),
)
ANY_LAYER = frozenset({"proxy.features.base"})


def layer_of(module: str) -> int:
    parts = module.split(".")
    unit = ".".join(parts[:2])
    for index, layer in enumerate(LAYERS):
        if unit in layer:
            return index
    raise AssertionError(f"{module}: in no layer — add its package to LAYERS (and to docs/architecture.md)")


def runtime_imports(source: str, module: str, is_package: bool) -> list[tuple[int, str]]:
    """The modules of `proxy` this source imports when it runs (a name imported from a package counts when it is a
    module of its own: ``from proxy.wire import json_body``)."""
    found = imported_modules(source, module, is_package=is_package, runtime_only=True)
    return [
        (line, name)
        for line, name in found
        if name == "proxy" or (name.startswith("proxy.") and _exists(name))
    ]


def _exists(name: str) -> bool:
    path = ROOT.joinpath(*name.split("."))
    return path.is_dir() or path.with_suffix(".py").is_file()


def violations(root: Path) -> list[str]:
    out = []
    for path in sorted((root / "proxy").rglob("*.py")):
        module = module_name(path, root)
        own = layer_of(module)
        for line, target in runtime_imports(path.read_text(), module, path.name == "__init__.py"):
            if target in ANY_LAYER or target.split(".")[:2] == module.split(".")[:2]:
                continue
            if layer_of(target) > own:
                out.append(f"{path.relative_to(root)}:{line}: imports {target} (a higher layer)")
    return out


def test_proxy_packages_import_only_downwards() -> None:
    assert violations(ROOT) == []


def test_every_proxy_package_has_a_layer() -> None:
    for path in (ROOT / "proxy").iterdir():
        if path.name.startswith(("_", ".")) or path.name == "py.typed":
            continue
        layer_of(module_name(path, ROOT))


@pytest.mark.parametrize(
    ("path", "source"),
    [
        ("proxy/routing/router.py", "from proxy.gateway.forward import Forwarder\n"),
        ("proxy/providers/x.py", "def f():\n    from proxy.features.dumps import Dumps\n"),
        ("proxy/wire/sse.py", "import proxy.config.settings\n"),
    ],
)
def test_an_upward_import_is_caught(tmp_path: Path, path: str, source: str) -> None:
    target = tmp_path / path
    for parent in reversed(target.relative_to(tmp_path).parents):
        (tmp_path / parent).mkdir(exist_ok=True)
    target.write_text(source)
    assert len(violations(tmp_path)) == 1


def test_type_only_imports_and_the_feature_protocol_are_allowed(tmp_path: Path) -> None:
    target = tmp_path / "proxy" / "providers" / "x.py"
    target.parent.mkdir(parents=True)
    target.write_text(
        "from typing import TYPE_CHECKING\nfrom proxy.features.base import Feature\n"
        "if TYPE_CHECKING:\n    from proxy.gateway.errors import HeadwayError\n"
    )
    assert violations(tmp_path) == []


def test_the_architecture_page_names_every_module() -> None:
    """docs/architecture.md's module map names every module of proxy/, tray/ and web_ui/ (by file or stem)."""
    text = (ROOT / "docs" / "architecture.md").read_text()
    section = text[text.index("## Modules (one per concern)") :]
    unnamed = [
        str(path.relative_to(ROOT))
        for package in ("proxy", "tray", "web_ui")
        for path in sorted((ROOT / package).rglob("*.py"))
        if path.name != "__init__.py" and path.name not in section and path.stem not in section
    ]
    assert unnamed == []
