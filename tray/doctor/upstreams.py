"""The upstream URLs in force (the settings file, then ``HEADWAY_*_BASE_URL``): usable, and encrypted where they
leave this machine; the certificates their TLS is verified with can be loaded. No network: ``doctor --network``
(network.py) then asks each one."""

from __future__ import annotations

from collections.abc import Mapping

from proxy.config.sections import plain_http_elsewhere
from proxy.config.settings import Settings, SettingsError, effective_upstreams

from . import Check

__all__ = ["CERTIFICATES", "certificates_check", "unusable", "url_check"]

NAME = "upstream URLs"
CERTIFICATES = "certificates"


def certificates_check() -> Check:
    """The context both HTTP clients verify upstreams with, loaded as `headway serve` loads it (proxy/wire/tls.py)."""
    from proxy.wire.tls import CertificatesUnusable, client_context, source

    try:
        context = client_context()
    except CertificatesUnusable as exc:
        return Check(CERTIFICATES, "fail", str(exc), exc.fix)
    where = source()
    if where.startswith("SSL_CERT_DIR="):  # OpenSSL looks a folder's certificates up when it verifies
        return Check(CERTIFICATES, "ok", f"{where}: looked up at each connection")
    roots = context.cert_store_stats()["x509_ca"]
    return Check(CERTIFICATES, "ok", f"{roots} trusted root{'s' if roots != 1 else ''} from {where}")


def unusable(check: str, error: SettingsError) -> Check:
    """``check`` failed: a HEADWAY_*_BASE_URL that `headway serve` would refuse (the network check asks none)."""
    return Check(
        check,
        "fail",
        "; ".join(error.problems),
        "change the variable, or unset it to use the settings file's value",
    )


def url_check(settings: Settings, environ: Mapping[str, str]) -> Check:
    try:
        upstreams = effective_upstreams(settings, environ)
    except SettingsError as exc:
        return unusable(NAME, exc)
    urls = {**upstreams.urls(), **{f"account {a.label}": a.base_url for a in settings.accounts if a.base_url}}
    plain = sorted(name for name, url in urls.items() if plain_http_elsewhere(url))
    if plain:  # only reachable with upstreams.allow_insecure_http: the user's choice, said out loud
        return Check(
            NAME,
            "warn",
            f"{', '.join(plain)}: plain http:// to another machine; keys, tokens and prompts cross the network "
            "unencrypted (upstreams.allow_insecure_http)",
            "use https:// where the upstream offers it, and turn upstreams.allow_insecure_http off",
        )
    changed = sorted(name for name, url in upstreams.urls().items() if url != _DEFAULTS[name])
    detail = (
        "the providers' own, over https"
        if not changed
        else f"{', '.join(changed)} changed; encrypted or local"
    )
    return Check(NAME, "ok", detail)


_DEFAULTS = Settings().upstreams.urls()
