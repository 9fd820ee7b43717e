"""tray.memory: what `headway serve` and bare `headway` do first to start fast and keep idle memory down — aiohttp's
own TLS contexts replaced by one that trusts nothing (so a request without Headway's context fails closed), no zstd
loaded until a body needs it, httpx without its command-line tool, one malloc arena on glibc, no pass over the older
generations while starting (then one collection, after listening) — and that both entry points do it before the
engine is built."""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import aiohttp.connector
import pytest

from tests.support.tls import self_signed
from tray.memory import _drop_aiohttp_default_tls

ROOT = Path(__file__).resolve().parents[2]


def _run(code: str) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


# --------------------------------------------------------------------------- aiohttp's default contexts


@pytest.fixture
def dropped(monkeypatch: pytest.MonkeyPatch) -> None:
    """aiohttp's defaults replaced in this process, and put back after the test."""
    for name in ("_SSL_CONTEXT_VERIFIED", "_SSL_CONTEXT_UNVERIFIED"):
        monkeypatch.setattr(aiohttp.connector, name, getattr(aiohttp.connector, name))
    _drop_aiohttp_default_tls()


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[tuple[int, ssl.SSLContext]]:
    """An HTTPS server on 127.0.0.1 with a self-signed certificate, and a client context that trusts it."""
    certificate = self_signed(tmp_path)
    server_ctx = certificate.server_context()
    trusting = certificate.client_context()
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)

    stopping = threading.Event()

    def serve() -> None:  # one connection at a time: a handshake, one request, one answer
        while not stopping.is_set():
            try:
                raw, _ = listener.accept()
            except TimeoutError:
                continue
            with raw:
                raw.settimeout(10)
                try:
                    with server_ctx.wrap_socket(raw, server_side=True) as conn:
                        request = b""
                        while b"\r\n\r\n" not in request:
                            chunk = conn.recv(4096)
                            if not chunk:
                                break
                            request += chunk
                        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
                except (ssl.SSLError, OSError):  # the client refused our certificate
                    pass

    thread = threading.Thread(target=serve, name="test-tls-server", daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1], trusting
    finally:
        stopping.set()
        thread.join(10)
        listener.close()


def _get(port: int, **kwargs: object) -> int:
    async def go() -> int:
        async with aiohttp.ClientSession() as session:
            async with session.get(f"https://127.0.0.1:{port}/", **kwargs) as response:  # type: ignore[arg-type]
                await response.read()
                return response.status

    return asyncio.run(go())


@pytest.mark.usefixtures("dropped")
def test_aiohttps_defaults_hold_no_certificate_store_and_still_verify() -> None:
    verified, unverified = aiohttp.connector._SSL_CONTEXT_VERIFIED, aiohttp.connector._SSL_CONTEXT_UNVERIFIED
    assert verified is unverified
    assert verified.cert_store_stats()["x509"] == 0  # the ~0.8 MB each held: the system's CA store
    assert verified.verify_mode == ssl.CERT_REQUIRED and verified.check_hostname


@pytest.mark.usefixtures("dropped")
def test_a_request_without_headways_context_fails_closed(tls_server: tuple[int, ssl.SSLContext]) -> None:
    port, trusting = tls_server
    assert (
        _get(port, ssl=trusting) == 200
    )  # a context handed in, as Headway's upstream client does: untouched
    with pytest.raises(aiohttp.ClientConnectorCertificateError):
        _get(port)  # aiohttp's default: verifies, and trusts nothing
    with pytest.raises(aiohttp.ClientConnectorCertificateError):
        _get(port, ssl=False)  # aiohttp's "do not verify" would have skipped the check: now it fails too


# --------------------------------------------------------------------------- one malloc arena (glibc)

# Native allocations from 4 threads at once; then the number of glibc thread heaps (64 MiB-aligned anonymous
# regions of 64 MiB: a usable part and its reserved rest) in /proc/self/maps.
_ARENAS = r"""
import ctypes, json, sys, threading
if sys.argv[1] == "prepared":
    from tray.memory import _one_malloc_arena
    _one_malloc_arena()
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
barrier = threading.Barrier(4)
def work():
    barrier.wait()
    for _ in range(2000):
        libc.malloc(600)
threads = [threading.Thread(target=work) for _ in range(4)]
for t in threads: t.start()
for t in threads: t.join()
spans = []
for line in open("/proc/self/maps"):
    fields = line.split()
    if len(fields) == 5:  # anonymous
        start, end = (int(x, 16) for x in fields[0].split("-"))
        spans.append((start, end))
heaps = {s for s, e in spans if s % (64 << 20) == 0 and sum(e2 - s2 for s2, e2 in spans if s <= s2 < s + (64 << 20)) == 64 << 20}
print(json.dumps({"heaps": len(heaps)}))
"""


@pytest.mark.skipif(sys.platform != "linux", reason="glibc's malloc arenas")
def test_threads_share_one_malloc_arena() -> None:
    assert (
        _run(_ARENAS.replace("sys.argv[1]", '"control"'))["heaps"] >= 1
    )  # glibc's default: arenas per thread
    assert _run(_ARENAS.replace("sys.argv[1]", '"prepared"'))["heaps"] == 0


# --------------------------------------------------------------------------- the entry points do it first

_FRESH_IMPORT = r"""
import json, ssl, sys
assert "aiohttp" not in sys.modules
import tray.memory
tray.memory.prepare_long_running_process()
import aiohttp.connector
print(json.dumps({
    "aiohttp_default_certs": aiohttp.connector._SSL_CONTEXT_VERIFIED.cert_store_stats()["x509"],
    "aiohttp_unverified_is_the_same": aiohttp.connector._SSL_CONTEXT_UNVERIFIED is aiohttp.connector._SSL_CONTEXT_VERIFIED,
    "default_context_certs_after": ssl.create_default_context().cert_store_stats()["x509"],
    "set_default_verify_paths_restored": ssl.SSLContext.set_default_verify_paths is ssl._SSLContext.set_default_verify_paths,
}))
"""


def test_aiohttp_imported_first_loads_no_certificates_and_ssl_is_restored() -> None:
    # In a fresh process aiohttp is imported under a patch (its two contexts would load the system's store, 20 ms
    # and 0.8 MB each); the standard library's constructors must be themselves again afterwards, or every context
    # made later (Headway's own) would trust nothing.
    seen = _run(_FRESH_IMPORT)
    assert seen["aiohttp_default_certs"] == 0 and seen["aiohttp_unverified_is_the_same"] is True
    assert isinstance(seen["default_context_certs_after"], int) and seen["default_context_certs_after"] > 0
    assert seen["set_default_verify_paths_restored"] is True


_ZSTD_ON_DEMAND = r"""
import json, sys
import tray.memory
tray.memory.prepare_long_running_process()
import aiohttp.compression_utils
import proxy.engine, proxy.gateway.app, proxy.gateway.server  # the gateway as `headway serve` builds it
after_start = "backports.zstd" in sys.modules
from backports import zstd
from proxy.wire.content_coding import decode_body
print(json.dumps({
    "aiohttp_has_zstd": aiohttp.compression_utils.HAS_ZSTD,
    "loaded_at_start": after_start,
    "decoded": decode_body(zstd.compress(b'{"model": "m"}'), "zstd", 1).decode(),
}))
"""


@pytest.mark.skipif(sys.version_info >= (3, 14), reason="compression.zstd is the standard library's there")
def test_zstd_is_not_loaded_at_start_and_decodes_a_body_when_one_comes() -> None:
    # aiohttp would import the zstd backport at its own import (0.6 MB idle) to decode answers it never decodes here.
    seen = _run(_ZSTD_ON_DEMAND)
    assert seen == {"aiohttp_has_zstd": False, "loaded_at_start": False, "decoded": '{"model": "m"}'}


# The entry point runs with build_services replaced by a probe that records what is set up by then and stops.
_ENTRY = r"""
import json, sys
import tray.app, tray.launch, tray.memory

class Probe(Exception):
    pass

prepared = []
real_prepare = tray.memory.prepare_long_running_process
def prepare():
    prepared.append("proxy.engine" in sys.modules)
    real_prepare()

def probe(*args, **kwargs):
    import aiohttp.connector
    seen = {
        "prepared_with_the_engine_imported": prepared,
        "aiohttp_default_certs": aiohttp.connector._SSL_CONTEXT_VERIFIED.cert_store_stats()["x509"],
    }
    print(json.dumps(seen))
    raise Probe

tray.memory.prepare_long_running_process = prepare
tray.app.build_services = probe
tray.launch.build_services = probe
tray.launch.has_display = lambda: False
try:
    if sys.argv[1] == "serve":
        from tray.cli import cli
        cli(["serve", "--port", "0"], standalone_mode=False)
    else:
        from proxy.config.paths import Paths
        tray.launch.run_tray_or_headless(Paths.from_env())
except Probe:
    pass
"""


@pytest.mark.parametrize("entry", ["serve", "bare"])
def test_the_long_running_entry_points_prepare_before_building(entry: str) -> None:
    seen = _run(_ENTRY.replace("sys.argv[1]", repr(entry)))
    assert seen == {"prepared_with_the_engine_imported": [False], "aiohttp_default_certs": 0}


# --------------------------------------------------------------------------- the cyclic collector while starting

# `headway serve`'s start in a fresh interpreter, counting the collector's passes by generation.
_COLLECTOR = r"""
import gc, json, time
import tray.memory
passes = [0, 0, 0]
def count(phase, info):
    if phase == "start":
        passes[info["generation"]] += 1
gc.callbacks.append(count)
before = gc.get_threshold()

tray.memory.prepare_long_running_process()
from proxy.config.paths import Paths
from proxy.engine import EngineOptions
import tray.app
tray.app.SETTLE_AFTER = 0.5
services = tray.app.build_services(Paths.from_env(), EngineOptions(port=0))
services.start()
try:
    starting = list(passes)
    listening = {"held": gc.get_threshold() != before, "frozen": gc.get_freeze_count()}
    deadline = time.monotonic() + 20
    while gc.get_threshold() != before and time.monotonic() < deadline:
        time.sleep(0.02)
    print(json.dumps({
        "young_passes": starting[0] > 0,
        "older_passes_while_starting": starting[1] + starting[2],
        "listening": listening,
        "restored": gc.get_threshold() == before,
        "frozen_after": gc.get_freeze_count() > 20000,
        "enabled": gc.isenabled(),
    }))
finally:
    services.stop()
"""


@pytest.mark.usefixtures("file_home")
def test_starting_walks_no_older_generation_and_settles_after_listening() -> None:
    # Before: the collector ran about 150 times over the objects the gateway's imports create (one full pass among
    # them, 12-20 ms), then collected everything once more as the gateway began to listen.
    seen = _run(_COLLECTOR)
    assert seen == {
        "young_passes": True,  # what dies young is still collected as it goes
        "older_passes_while_starting": 0,
        "listening": {"held": True, "frozen": 0},  # the one collection is not in the first requests' way
        "restored": True,
        "frozen_after": True,
        "enabled": True,
    }


_HTTPX_CLI = r"""
import json, sys
import tray.memory
tray.memory.prepare_long_running_process()
import httpx, proxy.engine
print(json.dumps({
    "pygments_loaded": any(name.split(".")[0] == "pygments" for name in sys.modules),
    "httpx_cli_module": "httpx._main" in sys.modules,
    "client": httpx.AsyncClient.__name__,
}))
"""


def test_httpx_is_imported_without_its_command_line_tool() -> None:
    # pygments is installed here (pytest needs it), as in any shared environment: httpx's command-line tool, which
    # Headway never runs, loaded its lexer table (0.5 MB idle).
    import pygments  # noqa: F401

    assert _run(_HTTPX_CLI) == {"pygments_loaded": False, "httpx_cli_module": False, "client": "AsyncClient"}
