"""A gateway on ChatGPT subscriptions, against the fake OpenAI sign-in service and the fake Codex backend: in-process
(`chatgpt_gateway`, seats added with `add_chatgpt`) or as a `headway serve` subprocess (`chatgpt_gateway_process`).
A seat is signed in the way a login leaves it: tokens in the keychain, the account in the settings."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from proxy.auth import TokenSet
from proxy.config.paths import Paths
from proxy.config.settings import Account
from proxy.config.store import SettingsStore
from proxy.secrets.keychain import account_secret_name
from tests.fakes import Behavior, FakeAccount, FakeOpenAIAuth
from tests.fakes.codex import FakeCodex
from tests.support.gateway import (
    GatewayProcess,
    RunningGateway,
    e2e_keychain,
    start_gateway,
    start_gateway_process,
)

__all__ = ["add_chatgpt", "chatgpt_gateway", "chatgpt_gateway_process"]


@contextmanager
def chatgpt_gateway(auth: FakeOpenAIAuth, codex: FakeCodex, **options: Any) -> Iterator[RunningGateway]:
    """An in-process gateway whose ChatGPT backend and sign-in service are ``codex`` and ``auth``, stopped when the
    block ends; ``options`` go to `start_gateway` (other upstreams, settings, keep-warm)."""
    env = {"HEADWAY_CHATGPT_BASE_URL": codex.url, "HEADWAY_OPENAI_AUTH_URL": auth.url}
    with start_gateway(env=env, **options) as gateway:
        yield gateway


def add_chatgpt(
    gw: RunningGateway, auth: FakeOpenAIAuth, account_id: str, label: str, **extra: object
) -> Account:
    """Seed a signed-in ChatGPT account (plan plus, ``label``@example.com) in a running in-process gateway."""
    payload = auth.issue_tokens(FakeAccount(account_id=account_id, email=f"{label}@example.com"))
    tokens = TokenSet.from_token_response(payload, now=time.time())
    gw.services.keychain.set(account_secret_name(label), tokens.to_json())
    account = Account(
        id=label, kind="chatgpt", label=label, chatgpt_account_id=account_id, plan_type="plus", **extra
    )
    gw.edit(lambda s: s.accounts.append(account))
    return account


@contextmanager
def chatgpt_gateway_process(
    seats: Sequence[tuple[str, str]], *, reply: str, websocket: bool = False
) -> Iterator[tuple[GatewayProcess, FakeCodex]]:
    """``seats`` are (label, ChatGPT account id) pairs, added in order; the fake Codex answers ``reply`` by default
    (and over WebSocket when ``websocket``). The gateway must stop cleanly (exit 0) when the block ends."""
    with FakeOpenAIAuth() as auth, FakeCodex(auth=auth, default=Behavior(text=reply)) as codex:
        if websocket:
            codex.sockets.enabled = True
        paths = Paths.from_env()
        keychain = e2e_keychain(paths)
        accounts: list[Account] = []
        for label, account_id in seats:
            tokens = TokenSet.from_token_response(
                auth.issue_tokens(FakeAccount(account_id=account_id)), now=time.time()
            )
            keychain.set(account_secret_name(label), tokens.to_json())
            accounts.append(Account(id=label, kind="chatgpt", label=label, chatgpt_account_id=account_id))
        SettingsStore(paths.settings_file).update(lambda s: s.accounts.extend(accounts))
        process = start_gateway_process(
            env={"HEADWAY_CHATGPT_BASE_URL": codex.url, "HEADWAY_OPENAI_AUTH_URL": auth.url}
        )
        try:
            yield process, codex
        finally:
            assert process.stop() == 0, process.output()
