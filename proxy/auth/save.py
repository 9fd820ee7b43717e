"""Storing a fresh ChatGPT login as an account: tokens to the keychain, the account to the settings file.

The ChatGPT account id from the id token is the account's identity: signing in to an account Headway already has
updates it (plan, email, tokens) instead of adding it again. Tokens go to the keychain only — the TokenSet JSON under
``account_secret_name(account.id)`` — and are stored before the account appears in the settings file.
"""

from __future__ import annotations

import logging

from proxy.auth.errors import LoginError
from proxy.auth.token_set import TokenSet
from proxy.config.accounts import AccountError, add_account_with_secret, new_account_id
from proxy.config.settings import Account, Settings
from proxy.config.store import SettingsStore
from proxy.secrets.keychain import Keychain, account_secret_name

__all__ = ["LABEL_MAX", "clean_label", "save_chatgpt_login"]

log = logging.getLogger("headway.login")

LABEL_MAX = 60


def clean_label(label: str | None) -> str | None:
    if label is None:
        return None
    label = label.strip()
    if not label:
        raise LoginError("the label is empty")
    if len(label) > LABEL_MAX:
        raise LoginError(f"the label is longer than {LABEL_MAX} characters")
    return label


def _chatgpt_account(settings: Settings, chatgpt_account_id: str) -> Account | None:
    for account in settings.accounts:
        if account.kind == "chatgpt" and account.chatgpt_account_id == chatgpt_account_id:
            return account
    return None


def _id_taken(settings: Settings, account_id: str) -> bool:
    return any(account.id == account_id for account in settings.accounts)


def _default_id_base(tokens: TokenSet) -> str:
    local = (tokens.email or "").split("@", 1)[0]
    return f"chatgpt-{local}" if local else "chatgpt"


def save_chatgpt_login(
    store: SettingsStore, keychain: Keychain, tokens: TokenSet, label: str | None = None
) -> tuple[Account, bool]:
    """Store a fresh login: (the account, True when it was added / False when an existing one was updated).

    The ChatGPT account id is the identity: an account with the same id is updated (plan and email; the label only
    when one is given) and its keychain secret replaced. Otherwise a new account is added, its id reserved in the
    settings file before the secret is stored (proxy/config/accounts.py), so two sign-ins at once never share an id.
    """
    label = clean_label(label)
    chatgpt_id = tokens.account_id
    if not chatgpt_id:
        raise LoginError(
            "the sign-in did not say which ChatGPT account it is for (no account id in the id token); "
            "try again, and check that the account has a ChatGPT Plus/Pro plan"
        )
    store.reload()
    existing = _chatgpt_account(store.current, chatgpt_id)
    if existing is not None:
        return _update(store, keychain, tokens, chatgpt_id, existing.id, label), False
    return _add(store, keychain, tokens, chatgpt_id, label), True


def _update(
    store: SettingsStore,
    keychain: Keychain,
    tokens: TokenSet,
    chatgpt_id: str,
    account_id: str,
    label: str | None,
) -> Account:
    # Replacing the secret first is safe: it is the same account's newer login.
    keychain.set(account_secret_name(account_id), tokens.to_json())
    updated: list[Account] = []

    def edit(settings: Settings) -> None:
        account = _chatgpt_account(settings, chatgpt_id)
        if account is None:  # removed while we signed in: bring it back under the id its secret now has
            if _id_taken(settings, account_id):
                raise LoginError("the account list changed while signing in; try again")
            account = Account(id=account_id, kind="chatgpt", label=label or tokens.email or "ChatGPT")
            settings.accounts.append(account)
        account.chatgpt_account_id = chatgpt_id
        if tokens.plan_type:
            account.plan_type = tokens.plan_type
        if tokens.email:
            account.email = tokens.email
        if label:
            account.label = label
        updated.append(account.model_copy())

    store.update(edit)
    log.info("ChatGPT account %s: new login stored", account_id)
    return updated[0]


def _add(
    store: SettingsStore, keychain: Keychain, tokens: TokenSet, chatgpt_id: str, label: str | None
) -> Account:
    # The id is reserved under the settings lock before the tokens are stored (proxy/config/accounts.py): two sign-ins at
    # once can never share it, and a failed one deletes no secret it did not write.
    def build(settings: Settings) -> Account:
        if _chatgpt_account(settings, chatgpt_id) is not None:
            raise LoginError("the account list changed while signing in; try again")
        return Account(
            id=new_account_id(settings, label or _default_id_base(tokens)),
            kind="chatgpt",
            label=label or (tokens.email or "ChatGPT")[:LABEL_MAX],
            chatgpt_account_id=chatgpt_id,
            plan_type=tokens.plan_type,
            email=tokens.email,
        )

    try:
        added = add_account_with_secret(store, keychain, build, tokens.to_json())
    except AccountError as exc:
        raise LoginError(f"{exc}; try again") from exc
    log.info("ChatGPT account %s added", added.id)
    return added
