"""system_keyring: the Secret Service chosen without loading every keyring backend, and keyring's own choice
wherever anything could differ. Each case runs a fresh interpreter against the real Secret Service (gnome-keyring
under scripts/test), reads what Headway chose and which modules loaded, and — where Headway must defer to keyring —
compares it with the same process letting keyring discover first (what Headway did before)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.support.python_json import run_python_json
from tests.support.secret_service import require_secret_service, secret_tool_lookup

ROOT = Path(__file__).resolve().parents[3]

#: modules only keyring's full discovery loads
DISCOVERY_ONLY = ("gi", "keyrings.alt", "keyring.backends.libsecret", "keyring.backends.kwallet")

# argv: service, "headway" (Headway chooses) or "discover" (keyring chooses first, as before), action
_PROBE = r"""
import json, sys
from proxy.secrets.keychain import Keychain, KeychainError

service, who, action = sys.argv[1:4]
if who == "discover":
    import keyring
    keyring.get_keyring()
kc = Keychain(service)
out = {"describe": kc.describe(), "secure": kc.secure}
try:
    if action in ("set", "round-trip"):
        kc.set("probe", "s3cret-" + service)
        out["read"] = kc.get("probe")
    if action in ("delete", "round-trip"):
        kc.delete("probe")
        out["after_delete"] = kc.get("probe")
    used = kc._system()
    out["used"] = f"{type(used).__module__}.{type(used).__qualname__}"
except KeychainError as exc:
    out["error"] = str(exc)
out["loaded"] = sorted(m for m in json.loads(sys.argv[4]) if m in sys.modules)
print(json.dumps(out))
"""

pytestmark = [pytest.mark.keychain, pytest.mark.usefixtures("secret_service")]


@pytest.fixture
def secret_service() -> None:
    require_secret_service()


def _probe(
    who: str, *, env: dict[str, str] | None = None, unset: tuple[str, ...] = (), action: str = "round-trip"
) -> dict[str, Any]:
    full_env = {k: v for k, v in os.environ.items() if k not in unset} | (env or {})
    service = f"headway-test-{uuid.uuid4().hex[:12]}"
    return run_python_json(_PROBE, service, who, action, json.dumps(DISCOVERY_ONLY), env=full_env)


def _as_before(*, env: dict[str, str] | None = None, unset: tuple[str, ...] = ()) -> dict[str, Any]:
    """Headway's choice, asserted equal to keyring's own (what Headway used before) in the same environment."""
    ours, keyrings = _probe("headway", env=env, unset=unset), _probe("discover", env=env, unset=unset)
    for field in ("describe", "secure", "used", "error"):
        assert ours.get(field) == keyrings.get(field), (field, ours, keyrings)
    return ours


def test_the_secret_service_is_used_without_loading_the_other_backends() -> None:
    service = f"headway-test-{uuid.uuid4().hex[:12]}"
    code = [sys.executable, "-c", _PROBE, service, "headway"]
    try:
        done = subprocess.run(
            [*code, "set", json.dumps(DISCOVERY_ONLY)], capture_output=True, text=True, cwd=ROOT, timeout=60
        )
        assert done.returncode == 0, done.stderr[-3000:]
        stored = json.loads(done.stdout.strip().splitlines()[-1])
        assert stored["used"] == "keyring.backends.SecretService.Keyring"
        assert stored["read"] == f"s3cret-{service}"
        assert stored["loaded"] == [], "keyring's full discovery ran: " + ", ".join(stored["loaded"])
        assert (stored["describe"], stored["secure"]) == ("GNOME Keyring", True)
        # In the Secret Service itself, for any libsecret client.
        assert secret_tool_lookup(service, "probe") == f"s3cret-{service}"
    finally:
        subprocess.run([*code, "delete", "[]"], capture_output=True, cwd=ROOT, timeout=60, check=True)
    assert secret_tool_lookup(service, "probe") is None


def test_it_is_the_backend_keyring_would_have_used() -> None:
    ours = _as_before()
    assert ours["used"] == "keyring.backends.SecretService.Keyring" and ours["loaded"] == []
    assert ours["read"].startswith("s3cret-") and ours["after_delete"] is None


@pytest.mark.parametrize("backend", ["keyring.backends.null.Keyring", "keyring.backends.fail.Keyring"])
def test_python_keyring_backend_is_honoured(backend: str) -> None:
    ours = _as_before(env={"PYTHON_KEYRING_BACKEND": backend})
    assert ours["describe"] == f"no secure keychain ({backend})" and not ours["secure"]
    assert "No secure keychain" in ours["error"] and backend in ours["error"]


def test_an_explicit_secure_backend_is_used_as_it_was() -> None:
    ours = _as_before(env={"PYTHON_KEYRING_BACKEND": "keyring.backends.libsecret.Keyring"})
    assert ours["used"] == "keyring.backends.libsecret.Keyring" and ours["describe"] == "GNOME Keyring"
    assert ours["read"].startswith("s3cret-") and ours["after_delete"] is None


def test_keyringrc_in_the_config_folder_is_honoured(tmp_path: Path) -> None:
    # keyring's config folder, under the XDG_CONFIG_HOME conftest points into tmp_path
    config = Path(os.environ["XDG_CONFIG_HOME"]) / "python_keyring" / "keyringrc.cfg"
    assert config.is_relative_to(tmp_path)
    config.parent.mkdir(parents=True)
    config.write_text("[backend]\ndefault-keyring = keyring.backends.null.Keyring\n", encoding="utf-8")
    ours = _as_before()
    assert ours["describe"] == "no secure keychain (keyring.backends.null.Keyring)"
    assert "No secure keychain" in ours["error"]


def test_kde_gets_keyrings_own_discovery() -> None:
    ours = _as_before(env={"XDG_CURRENT_DESKTOP": "KDE"})
    assert "keyring.backends.kwallet" in ours["loaded"]  # discovered: KWallet ranks first on KDE when it runs
    assert ours["read"].startswith("s3cret-")


def test_a_python_dbus_module_gets_keyrings_own_discovery(tmp_path: Path) -> None:
    """KWallet's backend needs python-dbus; where it could load, KWallet could join the chain (and be named)."""
    (tmp_path / "dbus").mkdir()
    (tmp_path / "dbus" / "__init__.py").write_text("")
    ours = _as_before(env={"PYTHONPATH": str(tmp_path)})
    assert "keyring.backends.kwallet" in ours["loaded"] and ours["read"].startswith("s3cret-")


def test_no_session_bus_gets_keyrings_own_discovery_and_the_same_refusal() -> None:
    ours = _as_before(unset=("DBUS_SESSION_BUS_ADDRESS",))
    assert not ours["secure"] and ours["describe"].startswith("no secure keychain (")
    assert "No secure keychain" in ours["error"] and '"secrets": {"backend": "file"}' in ours["error"]
    assert "keyring.backends.libsecret" in ours["loaded"]


def test_a_keyring_plugin_gets_keyrings_own_discovery(tmp_path: Path) -> None:
    """A plugin (an entry point in ``keyring.backends``) may outrank the Secret Service: keyring's discovery then
    chooses it, and so does Headway."""
    (tmp_path / "headway_test_plugin.py").write_text(
        "from keyring.backend import KeyringBackend\n"
        "class Keyring(KeyringBackend):\n"
        "    priority = 20\n"
        "    entries = {}\n"
        "    def get_password(self, service, username):\n"
        "        return self.entries.get((service, username))\n"
        "    def set_password(self, service, username, password):\n"
        "        self.entries[(service, username)] = password\n"
        "    def delete_password(self, service, username):\n"
        "        self.entries.pop((service, username), None)\n"
    )
    dist = tmp_path / "headway_test_plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: headway-test-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[keyring.backends]\nheadway-test = headway_test_plugin\n")
    ours = _as_before(env={"PYTHONPATH": str(tmp_path)})
    assert ours["used"] == "headway_test_plugin.Keyring" and ours["read"].startswith("s3cret-")
