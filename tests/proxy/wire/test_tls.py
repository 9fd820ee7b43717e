"""proxy.wire.tls: the certificate context loads on a thread of its own while the engine starts, trusts what httpx's
default trusts (certifi, or SSL_CERT_FILE), and a bundle that cannot be read still fails the engine's start."""

from __future__ import annotations

import json
import socket
import ssl
import threading
from pathlib import Path

import certifi
import httpx
import pytest

from proxy.config.paths import Paths
from proxy.engine import EngineOptions
from proxy.wire import tls
from proxy.wire.tls import CertificatesUnusable
from tests.support.gateway import run_cli
from tests.support.tls import self_signed
from tray.app import build_services


def test_the_context_loads_on_its_own_thread_and_trusts_what_httpx_trusts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    threads: list[str] = []
    load = tls.client_context

    def recorded() -> ssl.SSLContext:
        threads.append(threading.current_thread().name)
        return load()

    monkeypatch.setattr(tls, "client_context", recorded)
    context = tls.load_in_background().result(timeout=30)
    assert threads == ["headway-tls-load"]
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    expected = ssl.create_default_context(cafile=certifi.where()).cert_store_stats()
    assert context.cert_store_stats() == expected
    assert expected["x509_ca"] > 100


def test_ssl_cert_file_is_read_when_the_load_starts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    certificate = self_signed(tmp_path)
    monkeypatch.setenv("SSL_CERT_FILE", str(certificate.cert_file))
    future = tls.load_in_background()
    monkeypatch.delenv("SSL_CERT_FILE")
    context = future.result(timeout=30)
    assert context.cert_store_stats()["x509_ca"] == 1  # the company's root only, as httpx reads it

    # and it verifies a server presenting that certificate
    server = certificate.server_context()
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]

        def serve() -> None:
            raw, _ = listener.accept()
            with server.wrap_socket(raw, server_side=True) as conn:
                conn.recv(1024)
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        answer = httpx.get(f"https://127.0.0.1:{port}/", verify=context, timeout=10)
        thread.join(10)
    assert answer.status_code == 200 and answer.text == "ok"


def test_a_bundle_that_cannot_be_loaded_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    missing = tmp_path / "company-root.pem"
    monkeypatch.setenv("SSL_CERT_FILE", str(missing))
    with pytest.raises(CertificatesUnusable) as caught:
        tls.load_in_background().result(timeout=30)
    assert str(caught.value) == (
        f"cannot load the certificates to trust from SSL_CERT_FILE={missing}: No such file or directory"
    )

    not_pem = tmp_path / "root.txt"
    not_pem.write_text("not a certificate\n")
    monkeypatch.setenv("SSL_CERT_FILE", str(not_pem))
    with pytest.raises(
        CertificatesUnusable, match=r"SSL_CERT_FILE=.*root\.txt: .*NO_CERTIFICATE_OR_CRL_FOUND"
    ):
        tls.client_context()


def test_the_engines_start_fails_with_it_not_with_a_listening_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # It was reported as "cannot listen on 127.0.0.1:0: No such file or directory": any OSError of the start that
    # carried no file name was taken for the socket's.
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "company-root.pem"))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    services = build_services(Paths.from_env(), EngineOptions(port=port))
    try:
        with pytest.raises(CertificatesUnusable):
            services.start()
        # and the failed start let its port go (it kept it listening, for nobody, until the process ended)
        socket.create_server(("127.0.0.1", port)).close()
    finally:
        services.stop(timeout=3.0)


def test_headway_serve_says_which_variable_to_fix(tmp_path: Path) -> None:
    missing = tmp_path / "company-root.pem"
    paths = Paths.from_env()
    paths.ensure()
    paths.settings_file.write_text(json.dumps({"secrets": {"backend": "file"}}))
    done = run_cli("serve", "--port", "0", env={"SSL_CERT_FILE": str(missing)})
    assert done.returncode == 1
    assert f"headway: cannot load the certificates to trust from SSL_CERT_FILE={missing}" in done.stderr
    assert "point SSL_CERT_FILE at a readable PEM file" in done.stderr
    assert "cannot listen" not in done.stderr and "Traceback" not in done.stderr
