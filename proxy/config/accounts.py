"""Adding, removing, ordering and enabling accounts: the settings file for metadata, the keychain for secrets.

Adding is three steps, so that two adds at once (two CLIs, a double POST from the page) can never share an id and
no failure deletes a secret it did not write:

1. under the settings lock, refuse a label already in use and *reserve* the id by writing the account with the
   label marked ``(being added)``;
2. store the secret under that id — which is now ours alone;
3. give the account its real label (a settings change, so a running engine re-reads the secret at once).

A crash between 1 and 2 leaves one account without a secret, named by `headway status` ("no API key") and by its
label; `headway accounts remove` cleans it up, `headway accounts set-key` completes it. A removed account
disappears before its secret is deleted.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from typing import Literal

from pydantic import ValidationError

from proxy.config.settings import (
    Account,
    AccountKind,
    BudgetSettings,
    Settings,
    SettingsError,
    format_validation_error,
)
from proxy.config.store import SettingsStore
from proxy.secrets.keychain import Keychain, account_secret_name

__all__ = [
    "PENDING_MARK",
    "AccountError",
    "add_account_with_secret",
    "add_api_key_account",
    "check_key_provider",
    "check_label_free",
    "find_account",
    "key_provider",
    "key_warning",
    "kind_for_provider",
    "new_account_id",
    "relabel_in_routes",
    "remove_account",
    "reorder_accounts",
    "set_account_enabled",
    "set_api_key",
    "set_budget",
]

log = logging.getLogger("headway.accounts")

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


def key_provider(key: str) -> Literal["anthropic", "openai"] | None:
    """The provider a key clearly belongs to by its prefix: sk-ant- is Anthropic, any other sk- is OpenAI."""
    key = key.strip()
    if key.startswith("sk-ant-"):
        return "anthropic"
    if key.startswith("sk-"):
        return "openai"
    return None


def check_key_provider(kind: AccountKind, key: str) -> None:
    """Refuse a key that clearly belongs to the other provider, naming the command that adds it right."""
    expected = {"anthropic-api-key": "anthropic", "openai-api-key": "openai"}.get(kind)
    actual = key_provider(key)
    if expected is None or actual is None or actual == expected:
        return
    names = {"anthropic": "Anthropic", "openai": "OpenAI"}
    prefix = "sk-ant-" if actual == "anthropic" else "sk- (without ant)"
    raise AccountError(
        f"this is an {names[actual]} API key (it starts with {prefix}), not an {names[expected]} one; "
        f"add it as an {names[actual]} account: `headway accounts add {actual} --label …`"
    )


def key_warning(kind: AccountKind, key: str) -> str | None:
    """A gentle warning when a key does not look like any provider's; never a refusal (formats change).

    A key that is clearly the other provider's is refused by :func:`check_key_provider` instead.
    """
    expected = "anthropic" if kind == "anthropic-api-key" else "openai"
    if key_provider(key) not in (None, expected):
        return None
    if kind == "anthropic-api-key" and not key.startswith("sk-ant-"):
        return "this does not look like an Anthropic API key (they start with sk-ant-)"
    if kind == "openai-api-key" and not key.startswith("sk-"):
        return "this does not look like an OpenAI API key (they start with sk-)"
    return None


def _same_label(a: str, b: str) -> bool:
    return a.strip().casefold() == b.strip().casefold()


def check_label_free(settings: Settings, label: str, except_id: str | None = None) -> None:
    """Refuse a label another account already has (case-insensitive)."""
    for account in settings.accounts:
        if account.id == except_id:
            continue
        if _same_label(account.label, label) or _same_label(_unmarked(account.label), label):
            raise AccountError(
                f"an account labelled {account.label!r} already exists ({account.id}); choose another label"
                + (
                    f" or finish with `headway accounts remove {account.id}` (an add that did not complete)"
                    if account.label.endswith(PENDING_MARK)
                    else ""
                )
            )


def find_account(settings: Settings, ref: str) -> Account:
    account = settings.account(ref)
    if account is None:
        known = ", ".join(f"{a.id} ({a.label})" for a in settings.accounts) or "none"
        raise AccountError(f"no account {ref!r}; accounts: {known}")
    return account


PENDING_MARK = " (being added)"
_LABEL_MAX = 60  # Account.label's limit


def _pending_label(label: str) -> str:
    return label[: _LABEL_MAX - len(PENDING_MARK)].rstrip() + PENDING_MARK


def _unmarked(label: str) -> str:
    return label.removesuffix(PENDING_MARK)


def add_api_key_account(
    store: SettingsStore, keychain: Keychain, kind: AccountKind, label: str, api_key: str
) -> Account:
    api_key = api_key.strip()
    label = label.strip()
    if not api_key:
        raise AccountError("the API key is empty")
    if not label:
        raise AccountError("the label is empty")
    if len(label) > _LABEL_MAX:
        raise AccountError(f"the label is longer than {_LABEL_MAX} characters")
    check_key_provider(kind, api_key)

    def build(settings: Settings) -> Account:
        check_label_free(settings, label)
        return Account(id=new_account_id(settings, label), kind=kind, label=label)

    return add_account_with_secret(store, keychain, build, api_key)


def add_account_with_secret(
    store: SettingsStore, keychain: Keychain, build: Callable[[Settings], Account], secret: str
) -> Account:
    """Add the account ``build`` makes from the settings on disk (under the lock; raise there to refuse), with its
    secret: reserve the id, store the secret under it, finish the label (see the module docstring)."""
    reserved: list[Account] = []

    def reserve(settings: Settings) -> None:
        account = build(settings)
        reserved.append(account.model_copy())
        account.label = _pending_label(account.label)
        settings.accounts.append(account)

    store.update(reserve)
    account_id, label = reserved[0].id, reserved[0].label
    try:
        keychain.set(account_secret_name(account_id), secret)
    except BaseException:
        _drop_reservation(store, account_id)
        raise
    final: list[Account] = []

    def finish(settings: Settings) -> None:
        account = next((a for a in settings.accounts if a.id == account_id), None)
        if account is None:
            raise AccountError(f"the account {account_id} was removed while it was being added")
        account.label = label
        final.append(account.model_copy())

    try:
        store.update(finish)
    except AccountError:
        keychain.delete(account_secret_name(account_id))  # ours: the id was reserved for this add
        raise
    return final[0]


def _drop_reservation(store: SettingsStore, account_id: str) -> None:
    """Undo step 1 after a failed step 2; the secret was not written, so nothing is deleted from the keychain."""

    def edit(settings: Settings) -> None:
        settings.accounts = [
            a for a in settings.accounts if not (a.id == account_id and a.label.endswith(PENDING_MARK))
        ]

    try:
        store.update(edit)
    except (SettingsError, OSError) as exc:  # the reservation stays, named by status; remove cleans it
        log.warning("cannot undo the reservation of %s: %s", account_id, exc)


def _fresh(store: SettingsStore) -> Settings:
    store.reload()
    return store.current


def set_api_key(store: SettingsStore, keychain: Keychain, ref: str, api_key: str) -> Account:
    account = find_account(_fresh(store), ref)
    if account.kind == "chatgpt":
        raise AccountError(
            f"{account.label} is a ChatGPT account; sign in again with `headway login chatgpt`"
        )
    if not api_key.strip():
        raise AccountError("the API key is empty")
    check_key_provider(account.kind, api_key)
    keychain.set(account_secret_name(account.id), api_key.strip())
    # A settings change, so a running Headway (another process, watching the file) reads the key again at once
    # instead of serving its cached copy of the old one.
    finished: list[Account] = []

    def finish(settings: Settings) -> None:
        for candidate in settings.accounts:
            if candidate.id == account.id:
                candidate.label = _unmarked(
                    candidate.label
                )  # an add cut short before its key: the key completes it
                candidate.key_updated_at = round(time.time(), 3)
                finished.append(candidate.model_copy())

    try:
        store.update(finish)
    except (
        SettingsError
    ) as exc:  # the key is replaced all the same; a running Headway sees it within its cache time
        if account.label.endswith(PENDING_MARK):
            raise
        log.warning("replaced the key of %s, but cannot record that in the settings: %s", account.id, exc)
    return finished[0] if finished else account


def remove_account(store: SettingsStore, keychain: Keychain, ref: str) -> Account:
    removed: list[Account] = []

    def edit(settings: Settings) -> None:
        account = find_account(settings, ref)
        routes = []  # a route naming the account forgets it (and a route left with none goes)
        for route in settings.models.routes:
            kept = [r for r in route.accounts if settings.account(r) is not account]
            if kept:
                routes.append(route.model_copy(update={"accounts": kept}))
        settings.models.routes = routes
        settings.accounts = [a for a in settings.accounts if a.id != account.id]
        removed.append(account)

    store.update(edit)
    keychain.delete(account_secret_name(removed[0].id))
    return removed[0]


def relabel_in_routes(settings: Settings, account: Account, label: str) -> None:
    """Model routes that name ``account`` by its label follow it to ``label`` (call before changing the label)."""
    routes = []
    for route in settings.models.routes:
        refs = [
            label if ref == account.label and settings.account(ref) is account else ref
            for ref in route.accounts
        ]
        routes.append(route if refs == route.accounts else route.model_copy(update={"accounts": refs}))
    settings.models.routes = routes


def set_budget(store: SettingsStore, ref: str, daily_usd: float | None, monthly_usd: float | None) -> Account:
    """Set the account's spending caps; both None removes its budget."""
    changed: list[Account] = []

    def edit(settings: Settings) -> None:
        account = find_account(settings, ref)
        if daily_usd is None and monthly_usd is None:
            account.budget = None
        else:
            account.budget = BudgetSettings(daily_usd=daily_usd, monthly_usd=monthly_usd)
        changed.append(account)

    try:
        store.update(edit)
    except ValidationError as exc:
        raise AccountError("; ".join(format_validation_error(exc))) from exc
    return changed[0]


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
