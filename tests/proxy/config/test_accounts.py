"""Accounts on settings + keychain: concurrent adds never share an id or lose a key (issue 10.9), labels are unique
(case-insensitive), a key clearly of the other provider is refused (issue 10.13), and a failed add deletes nothing it
did not write."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from proxy.config.accounts import (
    PENDING_MARK,
    AccountError,
    add_api_key_account,
    key_provider,
    remove_account,
    set_api_key,
    set_budget,
)
from proxy.config.paths import Paths
from proxy.config.settings import Account, ModelRoute
from proxy.config.store import SettingsStore
from proxy.secrets.keychain import Keychain, KeychainError, account_secret_name
from tests.conftest import MemoryKeyring

ROOT = Path(__file__).resolve().parents[3]
ANT = "sk-ant-api03-" + "a" * 40
OAI = "sk-proj-" + "b" * 40


@pytest.fixture
def paths(tmp_path: Path) -> Paths:
    p = Paths.from_env({"HEADWAY_HOME": str(tmp_path / "home")})
    p.ensure()
    return p


@pytest.fixture
def store(paths: Paths) -> SettingsStore:
    s = SettingsStore.for_paths(paths)
    s.load(create=True)
    return s


@pytest.fixture
def keychain(paths: Paths) -> Keychain:
    return Keychain(paths.keychain_service)


@pytest.fixture
def slow_keyring(memory_keyring: MemoryKeyring, monkeypatch: pytest.MonkeyPatch) -> MemoryKeyring:
    """A keychain that takes a few milliseconds per write, like a D-Bus round trip: it widens the race window."""
    real = memory_keyring.set_password

    def slow(service: str, username: str, password: str) -> None:
        time.sleep(0.003)
        real(service, username, password)

    monkeypatch.setattr(memory_keyring, "set_password", slow)
    return memory_keyring


def _secrets(keyring: MemoryKeyring, service: str) -> dict[str, str]:
    return {name: value for (svc, name), value in keyring.entries.items() if svc == service}


def _run_together(n: int, target, *args_for) -> tuple[list[object], list[BaseException]]:  # type: ignore[no-untyped-def]
    barrier = threading.Barrier(n)
    results: list[object] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def run(i: int) -> None:
        barrier.wait(5)
        try:
            out = target(*args_for[i])
            with lock:
                results.append(out)
        except BaseException as exc:
            with lock:
                errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return results, errors


# --------------------------------------------------------------------------- concurrent adds


@pytest.mark.timeout(120)
def test_concurrent_adds_of_the_same_label_leave_one_account_with_its_own_key(
    paths: Paths, store: SettingsStore, slow_keyring: MemoryKeyring
) -> None:
    """Each thread has its own store and keychain, as two CLI processes would; 25 rounds of 4 at once."""
    for round_ in range(25):
        label = f"Team {round_}"
        keys = [f"sk-ant-round{round_}-thread{i}" for i in range(4)]

        def add(key: str, label: str = label) -> Account:
            own = SettingsStore.for_paths(paths)
            own.load()
            return add_api_key_account(own, Keychain(paths.keychain_service), "anthropic-api-key", label, key)

        results, errors = _run_together(4, add, *[(k,) for k in keys])
        assert len(results) == 1, f"round {round_}: {len(results)} adds of one label succeeded"
        assert all(isinstance(e, AccountError) and "already exists" in str(e) for e in errors), errors
        winner = results[0]
        assert isinstance(winner, Account) and winner.label == label
        secret = Keychain(paths.keychain_service).get(account_secret_name(winner.id))
        assert secret in keys, (
            f"round {round_}: the surviving account {winner.id} has no key (got {secret!r})"
        )
    store.reload()
    secrets = _secrets(slow_keyring, paths.keychain_service)
    assert sorted(secrets) == sorted(account_secret_name(a.id) for a in store.current.accounts), (
        "orphaned secrets"
    )
    assert not [a for a in store.current.accounts if a.label.endswith(PENDING_MARK)]


@pytest.mark.timeout(120)
def test_concurrent_adds_whose_labels_make_the_same_id_each_keep_their_own_key(
    paths: Paths, store: SettingsStore, slow_keyring: MemoryKeyring
) -> None:
    for round_ in range(10):
        labels = [f"Work {round_}", f"work {round_}!", f"WORK-{round_}?", f"work_{round_}"]
        keys = {label: f"sk-proj-{round_}-{i}" for i, label in enumerate(labels)}

        def add(label: str, key: str) -> Account:
            own = SettingsStore.for_paths(paths)
            own.load()
            return add_api_key_account(own, Keychain(paths.keychain_service), "openai-api-key", label, key)

        results, errors = _run_together(4, add, *[(label, keys[label]) for label in labels])
        assert not errors, errors
        added = [r for r in results if isinstance(r, Account)]
        assert len({a.id for a in added}) == 4
        for account in added:
            assert (
                Keychain(paths.keychain_service).get(account_secret_name(account.id)) == keys[account.label]
            )


@pytest.mark.timeout(180)
def test_concurrent_adds_from_separate_processes(paths: Paths, tmp_path: Path) -> None:
    """Real processes on the opt-in file keychain (shared across processes, unlike the in-memory test keyring)."""
    store = SettingsStore.for_paths(paths)
    store.update(lambda s: setattr(s.secrets, "backend", "file"))
    script = textwrap.dedent(
        """
        import json, sys
        from proxy.config.accounts import AccountError, add_api_key_account
        from proxy.secrets.keychain import Keychain
        from proxy.config.paths import Paths
        from proxy.config.store import SettingsStore
        paths = Paths.from_env()
        store = SettingsStore.for_paths(paths)
        store.load()
        kc = Keychain(paths.keychain_service, backend="file", file_path=paths.secrets_file)
        try:
            a = add_api_key_account(store, kc, "anthropic-api-key", sys.argv[1], sys.argv[2])
            print(json.dumps({"id": a.id}))
        except AccountError as exc:
            print(json.dumps({"error": str(exc)}))
        """
    )
    env = {"HEADWAY_HOME": str(paths.home), "PATH": "/usr/bin:/bin"}
    for round_ in range(4):
        keys = [f"sk-ant-p{round_}-{i}" for i in range(4)]
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", script, f"Shared {round_}", key],
                cwd=ROOT,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
            for key in keys
        ]
        outs = []
        for p in procs:
            out, err = p.communicate(timeout=60)
            assert p.returncode == 0, err.decode()
            outs.append(json.loads(out))
        winners = [o["id"] for o in outs if "id" in o]
        assert len(winners) == 1, outs
        secrets = json.loads(paths.secrets_file.read_text())
        assert secrets.get(account_secret_name(winners[0])) in keys, (
            f"round {round_}: the winner lost its key"
        )


# --------------------------------------------------------------------------- labels


def test_a_label_in_use_is_refused_case_insensitively(
    store: SettingsStore, keychain: Keychain, memory_keyring: MemoryKeyring, paths: Paths
) -> None:
    first = add_api_key_account(store, keychain, "anthropic-api-key", "Work", ANT)
    before = store.path.read_bytes()
    with pytest.raises(
        AccountError, match=r"an account labelled 'Work' already exists \(work\); choose another label"
    ):
        add_api_key_account(store, keychain, "openai-api-key", "  work ", OAI)
    assert store.path.read_bytes() == before
    assert _secrets(memory_keyring, paths.keychain_service) == {account_secret_name(first.id): ANT}


def test_labels_are_stripped(store: SettingsStore, keychain: Keychain) -> None:
    assert add_api_key_account(store, keychain, "anthropic-api-key", "  Work  ", ANT).label == "Work"
    with pytest.raises(AccountError, match="the label is empty"):
        add_api_key_account(store, keychain, "anthropic-api-key", "   ", ANT)


# --------------------------------------------------------------------------- the key's provider


@pytest.mark.parametrize(
    ("key", "provider"),
    [
        (ANT, "anthropic"),
        ("sk-ant-admin01-x", "anthropic"),
        (OAI, "openai"),
        ("sk-svcacct-x", "openai"),
        ("sk-abc123", "openai"),
        ("hw-local", None),
        ("AIza-google", None),
    ],
)
def test_key_provider(key: str, provider: str | None) -> None:
    assert key_provider(key) == provider


def test_an_anthropic_key_added_as_openai_is_refused_with_the_right_command(
    store: SettingsStore, keychain: Keychain, memory_keyring: MemoryKeyring
) -> None:
    with pytest.raises(AccountError) as info:
        add_api_key_account(store, keychain, "openai-api-key", "Work", ANT)
    assert "this is an Anthropic API key" in str(info.value)
    assert "`headway accounts add anthropic --label …`" in str(info.value)
    assert store.current.accounts == [] and memory_keyring.entries == {}


def test_an_openai_key_added_as_anthropic_is_refused_with_the_right_command(
    store: SettingsStore, keychain: Keychain, memory_keyring: MemoryKeyring
) -> None:
    with pytest.raises(
        AccountError, match=r"this is an OpenAI API key .*`headway accounts add openai --label …`"
    ):
        add_api_key_account(store, keychain, "anthropic-api-key", "Work", OAI)
    assert store.current.accounts == [] and memory_keyring.entries == {}


def test_set_key_refuses_the_other_providers_key(store: SettingsStore, keychain: Keychain) -> None:
    account = add_api_key_account(store, keychain, "anthropic-api-key", "Work", ANT)
    with pytest.raises(AccountError, match="this is an OpenAI API key"):
        set_api_key(store, keychain, account.id, OAI)
    assert keychain.get(account_secret_name(account.id)) == ANT


def test_an_unknown_key_format_is_accepted(store: SettingsStore, keychain: Keychain) -> None:
    """Formats change: only a key clearly of the other provider is refused; key_warning covers the rest."""
    account = add_api_key_account(store, keychain, "anthropic-api-key", "Proxy", "corp-proxy-token")
    assert keychain.get(account_secret_name(account.id)) == "corp-proxy-token"


# --------------------------------------------------------------------------- failures


def test_a_failed_keychain_write_undoes_the_reservation_and_deletes_no_secret(
    store: SettingsStore,
    keychain: Keychain,
    memory_keyring: MemoryKeyring,
    paths: Paths,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    work = add_api_key_account(store, keychain, "anthropic-api-key", "Work", ANT)

    def locked(name: str, value: str) -> None:
        raise KeychainError("the keychain is locked")

    monkeypatch.setattr(keychain, "set", locked)
    with pytest.raises(KeychainError):
        add_api_key_account(store, keychain, "anthropic-api-key", "Home", ANT + "2")
    assert [a.id for a in store.current.accounts] == [work.id]
    assert _secrets(memory_keyring, paths.keychain_service) == {account_secret_name(work.id): ANT}


def test_an_account_removed_while_being_added_does_not_keep_a_secret(
    store: SettingsStore, paths: Paths, memory_keyring: MemoryKeyring
) -> None:
    class RemovingKeychain(Keychain):
        def set(self, name: str, value: str) -> None:
            super().set(name, value)
            other = SettingsStore.for_paths(paths)
            other.update(lambda s: setattr(s, "accounts", []))

    with pytest.raises(AccountError, match="was removed while it was being added"):
        add_api_key_account(store, RemovingKeychain(paths.keychain_service), "anthropic-api-key", "Work", ANT)
    assert _secrets(memory_keyring, paths.keychain_service) == {}


def test_an_unfinished_add_is_named_and_remove_cleans_it(store: SettingsStore, keychain: Keychain) -> None:
    """What a kill -9 between reserving and storing the key leaves behind."""
    store.update(
        lambda s: s.accounts.append(Account(id="work", kind="anthropic-api-key", label="Work" + PENDING_MARK))
    )
    with pytest.raises(
        AccountError, match=r"`headway accounts remove work` \(an add that did not complete\)"
    ):
        add_api_key_account(store, keychain, "anthropic-api-key", "Work", ANT)
    remove_account(store, keychain, "work")
    assert add_api_key_account(store, keychain, "anthropic-api-key", "Work", ANT).id == "work"
    assert keychain.get(account_secret_name("work")) == ANT


# --------------------------------------------------------------------------- ChatGPT logins (same reservation)


@pytest.mark.timeout(120)
def test_concurrent_chatgpt_logins_never_leave_an_account_without_its_tokens(
    paths: Paths, store: SettingsStore, slow_keyring: MemoryKeyring
) -> None:
    """Two sign-ins at once (a double click on the page, the CLI beside it) that make the same account id."""
    from proxy.auth import LoginError, TokenSet, save_chatgpt_login

    for round_ in range(10):
        same_account = round_ % 2 == 0
        tokens = [
            TokenSet(
                access_token=f"at-{round_}-{i}",
                refresh_token=f"rt-{round_}-{i}",
                id_token=None,
                expires_at=time.time() + 3600,
                account_id=f"acc-{round_}" if same_account else f"acc-{round_}-{i}",
                email=f"me{round_}@example.com",
            )
            for i in range(2)
        ]

        def login(t: TokenSet) -> tuple[Account, bool]:
            own = SettingsStore.for_paths(paths)
            own.load()
            return save_chatgpt_login(own, Keychain(paths.keychain_service), t)

        results, errors = _run_together(2, login, *[(t,) for t in tokens])
        assert all(isinstance(e, LoginError | AccountError) for e in errors), errors
        assert results, f"round {round_}: both sign-ins failed: {errors}"
        store.reload()
        for account in store.current.accounts:
            raw = Keychain(paths.keychain_service).get(account_secret_name(account.id))
            assert raw is not None, f"round {round_}: {account.id} has no tokens"
            assert json.loads(raw)["account_id"] == account.chatgpt_account_id, (
                f"round {round_}: tokens of another"
            )


def test_a_label_too_long_is_a_clear_error(store: SettingsStore, keychain: Keychain) -> None:
    with pytest.raises(AccountError, match="the label is longer than 60 characters"):
        add_api_key_account(store, keychain, "anthropic-api-key", "x" * 61, ANT)
    assert add_api_key_account(store, keychain, "anthropic-api-key", "y" * 60, ANT).label == "y" * 60


def test_set_key_completes_an_unfinished_add(store: SettingsStore, keychain: Keychain) -> None:
    """`status` tells the user to run set-key for an account without its key; that also finishes the label."""
    store.update(
        lambda s: s.accounts.append(Account(id="work", kind="anthropic-api-key", label="Work" + PENDING_MARK))
    )
    done = set_api_key(store, keychain, "work", ANT)
    assert done.label == "Work" and store.current.account("work").label == "Work"  # type: ignore[union-attr]
    assert keychain.get(account_secret_name("work")) == ANT


def test_removing_an_account_takes_it_out_of_the_model_routes(
    store: SettingsStore, keychain: Keychain
) -> None:
    add_api_key_account(store, keychain, "anthropic-api-key", "work", "sk-ant-work")
    add_api_key_account(store, keychain, "anthropic-api-key", "lab", "sk-ant-lab")
    store.update(
        lambda s: setattr(
            s.models,
            "routes",
            [
                ModelRoute(match="claude-opus-*", accounts=["lab", "work"]),
                ModelRoute(match="x", accounts=["lab"]),
            ],
        )
    )
    remove_account(store, keychain, "lab")
    assert [(r.match, r.accounts) for r in store.current.models.routes] == [("claude-opus-*", ["work"])]


def test_a_budget_is_set_validated_and_cleared(store: SettingsStore, keychain: Keychain) -> None:
    add_api_key_account(store, keychain, "anthropic-api-key", "work", "sk-ant-work")
    set_budget(store, "work", 5.0, 50.0)
    assert (
        store.current.accounts[0].budget is not None and store.current.accounts[0].budget.monthly_usd == 50.0
    )
    with pytest.raises(AccountError, match="daily_usd: Input should be greater than 0"):
        set_budget(store, "work", -1.0, None)
    assert store.current.accounts[0].budget.daily_usd == 5.0  # nothing lost
    set_budget(store, "work", None, None)
    assert store.current.accounts[0].budget is None
