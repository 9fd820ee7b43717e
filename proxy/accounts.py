"""Adding, removing, ordering and enabling accounts: the settings file for metadata, the keychain for secrets.

Order of writes is chosen so that no failure leaves a secret without an account or an account pointing at a secret
that was never stored: a new secret is stored before the account appears; a removed account disappears before
its secret is deleted.
"""

from __future__ import annotations

import re
from typing import Literal

from .keychain import Keychain, account_secret_name
from .settings import Account, AccountKind, Settings, SettingsError
from .settings_store import SettingsStore

__all__ = [
    "AccountError",
    "add_api_key_account",
    "find_account",
    "key_warning",
    "kind_for_provider",
    "new_account_id",
    "remove_account",
    "reorder_accounts",
    "set_account_enabled",
    "set_api_key",
]

_PROVIDER_KINDS: dict[str, AccountKind] = {"anthropic": "anthropic-api-key", "openai": "openai-api-key"}


class AccountError(Exception):
    pass


def kind_for_provider(provider: Literal["anthropic", "openai"]) -> AccountKind:
    return _PROVIDER_KINDS[provider]


def new_account_id(settings: Settings, label: str) -> str:
    base = re.sub(r"[^a-z0-9]+", "-", label.lower()).strip("-")[:32] or "account"
    taken = {a.id for a in settings.accounts}
    candidate, n = base, 2
    while candidate in taken:
        candidate, n = f"{base}-{n}", n + 1
    return candidate


def key_warning(kind: AccountKind, key: str) -> str | None:
    """A gentle warning when a key does not look like the provider's; never a refusal (formats change)."""
    if kind == "anthropic-api-key" and not key.startswith("sk-ant-"):
        return "this does not look like an Anthropic API key (they start with sk-ant-)"
    if kind == "openai-api-key" and not key.startswith("sk-"):
        return "this does not look like an OpenAI API key (they start with sk-)"
    return None


def find_account(settings: Settings, ref: str) -> Account:
    account = settings.account(ref)
    if account is None:
        known = ", ".join(f"{a.id} ({a.label})" for a in settings.accounts) or "none"
        raise AccountError(f"no account {ref!r}; accounts: {known}")
    return account


def add_api_key_account(
    store: SettingsStore, keychain: Keychain, kind: AccountKind, label: str, api_key: str
) -> Account:
    api_key = api_key.strip()
    if not api_key:
        raise AccountError("the API key is empty")
    account_id = new_account_id(_fresh(store), label)
    keychain.set(account_secret_name(account_id), api_key)
    added: list[Account] = []

    def edit(settings: Settings) -> None:
        final_id = new_account_id(settings, label) if settings.account(account_id) else account_id
        if final_id != account_id:
            raise AccountError("the account list changed while adding; try again")
        account = Account(id=account_id, kind=kind, label=label)
        settings.accounts.append(account)
        added.append(account)

    try:
        store.update(edit)
    except (SettingsError, AccountError):
        keychain.delete(account_secret_name(account_id))
        raise
    return added[0]


def _fresh(store: SettingsStore) -> Settings:
    store.reload()
    return store.current


def set_api_key(store: SettingsStore, keychain: Keychain, ref: str, api_key: str) -> Account:
    account = find_account(_fresh(store), ref)
    if account.kind == "chatgpt":
        raise AccountError(f"{account.label} is a ChatGPT account; sign in again with `headway login chatgpt`")
    if not api_key.strip():
        raise AccountError("the API key is empty")
    keychain.set(account_secret_name(account.id), api_key.strip())
    return account


def remove_account(store: SettingsStore, keychain: Keychain, ref: str) -> Account:
    removed: list[Account] = []

    def edit(settings: Settings) -> None:
        account = find_account(settings, ref)
        settings.accounts = [a for a in settings.accounts if a.id != account.id]
        removed.append(account)

    store.update(edit)
    keychain.delete(account_secret_name(removed[0].id))
    return removed[0]


def set_account_enabled(store: SettingsStore, ref: str, enabled: bool) -> Account:
    changed: list[Account] = []

    def edit(settings: Settings) -> None:
        account = find_account(settings, ref)
        account.enabled = enabled
        changed.append(account)

    store.update(edit)
    return changed[0]


def reorder_accounts(store: SettingsStore, refs: list[str]) -> list[Account]:
    """Move the named accounts to the front, in the order given; the rest keep their relative order."""
    result: list[Account] = []

    def edit(settings: Settings) -> None:
        first = [find_account(settings, ref) for ref in refs]
        ids = [a.id for a in first]
        if len(set(ids)) != len(ids):
            raise AccountError("an account is named twice")
        rest = [a for a in settings.accounts if a.id not in ids]
        settings.accounts = first + rest
        result.extend(settings.accounts)

    store.update(edit)
    return result
