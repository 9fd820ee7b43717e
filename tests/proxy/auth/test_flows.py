"""proxy.auth (flows.py, save.py): saving a ChatGPT login, and the browser and device flows end to end against FakeOpenAIAuth."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import keyring
import keyring.backends.fail
import pytest

from proxy import __version__
from proxy.auth import (
    BrowserLogin,
    DeviceCodeUnavailable,
    DeviceLogin,
    LoginCancelled,
    LoginError,
    LoginResult,
    LoginTimeout,
    OAuthConfig,
    PortBusy,
    TokenSet,
    TransientAuthError,
    callback_port,
    oauth_config,
    save_chatgpt_login,
)
from proxy.config.paths import Paths
from proxy.config.settings import Account, Settings, SettingsError
from proxy.config.store import SettingsStore
from proxy.secrets.keychain import Keychain, KeychainError, account_secret_name
from tests.fakes.openai_auth import FakeAccount, FakeOpenAIAuth
from tests.fakes.server import Behavior
from web_ui.callback import CallbackServer

PLUS = FakeAccount(account_id="acct-personal", plan_type="plus", email="me@example.com")
WORK = FakeAccount(account_id="acct-work", plan_type="team", email="me@work.example")


@pytest.fixture
def paths() -> Paths:
    paths = Paths.from_env()
    paths.ensure()
    return paths


@pytest.fixture
def store(paths: Paths) -> SettingsStore:
    store = SettingsStore(paths.settings_file)
    store.load(create=True)
    return store


@pytest.fixture
def keychain(paths: Paths) -> Keychain:
    return Keychain(paths.keychain_service)


@pytest.fixture
def cfg(auth: FakeOpenAIAuth) -> OAuthConfig:
    return OAuthConfig(issuer=auth.url, http_timeout=5.0)


@pytest.fixture
def pool() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(2) as executor:
        yield executor


def tokens_for(auth: FakeOpenAIAuth, account: FakeAccount) -> TokenSet:
    return TokenSet.from_token_response(auth.issue_tokens(account), now=time.time())


def stored(keychain: Keychain, account: Account) -> TokenSet:
    text = keychain.get(account_secret_name(account.id))
    assert text is not None
    return TokenSet.from_json(text)


# -- save_chatgpt_login ------------------------------------------------------------------------------------------


def test_new_login_adds_an_account_with_plan_email_and_the_secret_in_the_keychain(
    store: SettingsStore, keychain: Keychain, auth: FakeOpenAIAuth, paths: Paths
) -> None:
    tokens = tokens_for(auth, PLUS)
    account, created = save_chatgpt_login(store, keychain, tokens)
    assert created
    assert account == Account(
        id="chatgpt-me",
        kind="chatgpt",
        label="me@example.com",
        chatgpt_account_id="acct-personal",
        plan_type="plus",
        email="me@example.com",
    )
    assert store.current.accounts == [account]
    assert stored(keychain, account) == tokens
    text = paths.settings_file.read_text()
    for secret in (tokens.access_token, tokens.refresh_token, tokens.id_token or "-"):
        assert secret not in text
    assert "token" not in text


def test_same_chatgpt_account_twice_updates_it_instead_of_duplicating(
    store: SettingsStore, keychain: Keychain, auth: FakeOpenAIAuth
) -> None:
    first, created = save_chatgpt_login(store, keychain, tokens_for(auth, PLUS))
    assert created
    upgraded = FakeAccount(account_id="acct-personal", plan_type="pro", email="me@example.com")
    newer = tokens_for(auth, upgraded)
    second, created = save_chatgpt_login(store, keychain, newer)
    assert not created
    assert second.id == first.id and second.label == first.label
    assert second.plan_type == "pro"
    assert [a.id for a in store.current.accounts] == [first.id]
    assert store.current.accounts[0].plan_type == "pro"
    assert stored(keychain, second).refresh_token == newer.refresh_token


def test_a_second_chatgpt_account_is_added_next_to_the_first(
    store: SettingsStore, keychain: Keychain, auth: FakeOpenAIAuth
) -> None:
    personal, _ = save_chatgpt_login(store, keychain, tokens_for(auth, PLUS))
    work, created = save_chatgpt_login(store, keychain, tokens_for(auth, WORK), label="Work seat")
    assert created
    assert (work.id, work.label, work.plan_type) == ("work-seat", "Work seat", "team")
    assert [a.id for a in store.current.accounts] == [personal.id, "work-seat"]
    assert stored(keychain, personal).account_id == "acct-personal"
    assert stored(keychain, work).account_id == "acct-work"


def test_label_is_kept_on_relogin_unless_a_new_one_is_given(
    store: SettingsStore, keychain: Keychain, auth: FakeOpenAIAuth
) -> None:
    account, _ = save_chatgpt_login(store, keychain, tokens_for(auth, PLUS), label="personal")
    assert (account.id, account.label) == ("personal", "personal")
    again, _ = save_chatgpt_login(store, keychain, tokens_for(auth, PLUS))
    assert again.label == "personal"
    renamed, created = save_chatgpt_login(store, keychain, tokens_for(auth, PLUS), label="  Home  ")
    assert not created
    assert (renamed.id, renamed.label) == ("personal", "Home")  # the id (keychain entry name) never changes


def test_relogin_keeps_what_the_account_had_besides_identity(
    store: SettingsStore, keychain: Keychain, auth: FakeOpenAIAuth
) -> None:
    save_chatgpt_login(store, keychain, tokens_for(auth, PLUS))

    def disable(settings: Settings) -> None:
        settings.accounts[0].enabled = False

    store.update(disable)
    again, _ = save_chatgpt_login(store, keychain, tokens_for(auth, PLUS))
    assert again.enabled is False


def test_default_id_and_label_without_an_email(store: SettingsStore, keychain: Keychain) -> None:
    tokens = TokenSet("a", "r", None, time.time() + 3600, account_id="acct-x")
    account, _ = save_chatgpt_login(store, keychain, tokens)
    assert (account.id, account.label, account.email, account.plan_type) == ("chatgpt", "ChatGPT", None, None)
    other = TokenSet("a", "r", None, time.time() + 3600, account_id="acct-y")
    second, _ = save_chatgpt_login(store, keychain, other)
    assert second.id == "chatgpt-2"


def test_id_does_not_collide_with_existing_accounts(
    store: SettingsStore, keychain: Keychain, auth: FakeOpenAIAuth
) -> None:
    def add(settings: Settings) -> None:
        settings.accounts.append(Account(id="chatgpt-me", kind="openai-api-key", label="chatgpt-me"))

    store.update(add)
    account, _ = save_chatgpt_login(store, keychain, tokens_for(auth, PLUS))
    assert account.id == "chatgpt-me-2"


@pytest.mark.parametrize(("label", "message"), [("   ", "the label is empty"), ("x" * 61, "longer than 60")])
def test_unusable_labels_are_refused_before_anything_is_stored(
    store: SettingsStore, keychain: Keychain, auth: FakeOpenAIAuth, label: str, message: str
) -> None:
    with pytest.raises(LoginError, match=message):
        save_chatgpt_login(store, keychain, tokens_for(auth, PLUS), label=label)
    assert store.current.accounts == []


def test_a_token_set_without_account_id_is_refused(store: SettingsStore, keychain: Keychain) -> None:
    tokens = TokenSet("a", "r", None, time.time() + 3600, email="me@example.com")
    with pytest.raises(LoginError, match="no account id"):
        save_chatgpt_login(store, keychain, tokens)
    assert store.current.accounts == []
    assert keychain.get(account_secret_name("chatgpt-me")) is None


class WatchingKeychain(Keychain):
    """Records, at each write, whether the settings file already named the account."""

    def __init__(self, service: str, settings_file: Path) -> None:
        super().__init__(service)
        self.settings_file = settings_file
        self.seen: list[tuple[str, bool]] = []

    def set(self, name: str, value: str) -> None:
        text = self.settings_file.read_text() if self.settings_file.exists() else ""
        account_id = name.removeprefix("account:")
        self.seen.append((account_id, f'"id": "{account_id}"' in text))
        super().set(name, value)


def test_the_id_is_reserved_before_the_secret_is_stored(
    store: SettingsStore, paths: Paths, auth: FakeOpenAIAuth
) -> None:
    """Two sign-ins at once can never share an id (issue 10.9; see proxy/config/accounts.py)."""
    keychain = WatchingKeychain(paths.keychain_service, paths.settings_file)
    account, _ = save_chatgpt_login(store, keychain, tokens_for(auth, PLUS))
    assert keychain.seen == [(account.id, True)]
    assert f'"id": "{account.id}"' in paths.settings_file.read_text()
    assert "(being added)" not in paths.settings_file.read_text()


def test_failed_settings_write_removes_the_new_secret(
    store: SettingsStore, keychain: Keychain, auth: FakeOpenAIAuth, paths: Paths
) -> None:
    paths.settings_file.write_text('{"version": 1, "accounts": [')  # a half-finished hand edit
    with pytest.raises(SettingsError):
        save_chatgpt_login(store, keychain, tokens_for(auth, PLUS))
    assert keychain.get(account_secret_name("chatgpt-me")) is None


def test_oauth_config_and_callback_port_follow_the_environment() -> None:
    settings = Settings()
    assert oauth_config(settings, {}).issuer == "https://auth.openai.com"
    assert (
        oauth_config(settings, {"HEADWAY_OPENAI_AUTH_URL": "http://127.0.0.1:9/"}).issuer
        == "http://127.0.0.1:9"
    )
    assert callback_port({}) == 1455
    assert callback_port({"HEADWAY_OAUTH_CALLBACK_PORT": "41000"}) == 41000
    with pytest.raises(LoginError, match="HEADWAY_OAUTH_CALLBACK_PORT"):
        callback_port({"HEADWAY_OAUTH_CALLBACK_PORT": "nope"})


def test_login_result_summary() -> None:
    account = Account(id="chatgpt-me", kind="chatgpt", label="me", email="me@example.com", plan_type="plus")
    assert (
        LoginResult(account, True).summary()
        == "signed in as me@example.com (plan plus) — account chatgpt-me added"
    )
    assert LoginResult(account, False).summary().endswith("account chatgpt-me updated")


# -- BrowserLogin --------------------------------------------------------------------------------------------------


def browser_login(
    store: SettingsStore, keychain: Keychain, cfg: OAuthConfig, **kwargs: object
) -> BrowserLogin:
    options: dict[str, object] = {
        "port": 0,
        "open_browser": False,
        "callback_server": CallbackServer,
    } | kwargs
    return BrowserLogin(store, keychain, cfg, **options)  # type: ignore[arg-type]


def test_browser_login_end_to_end_over_http(
    store: SettingsStore, keychain: Keychain, cfg: OAuthConfig, auth: FakeOpenAIAuth, pool: ThreadPoolExecutor
) -> None:
    auth.auto_redirect = True
    auth.next_login(PLUS.account_id, plan_type=PLUS.plan_type, email=PLUS.email)
    steps: list[str] = []
    login = browser_login(store, keychain, cfg, progress=steps.append)
    url = login.start()
    query = parse_qs(urlsplit(url).query)
    port = int(urlsplit(query["redirect_uri"][0]).port or 0)
    assert query["redirect_uri"] == [f"http://localhost:{port}/auth/callback"]
    assert url.startswith(f"{auth.url}/oauth/authorize?")
    assert not login.opened

    result: Future[LoginResult] = pool.submit(login.finish)
    # The "browser": the issuer answers 302 to the callback, whose page waits for the exchange and the save.
    page = httpx.get(url, follow_redirects=True, timeout=10)
    assert page.status_code == 200
    assert urlsplit(str(page.url)).netloc == f"localhost:{port}"
    assert "Signed in to ChatGPT" in page.text
    assert "Headway signed in as me@example.com (plan plus)." in page.text

    outcome = result.result(10)
    assert outcome.created and outcome.action == "added"
    assert outcome.account.chatgpt_account_id == "acct-personal"
    assert store.current.accounts == [outcome.account]
    assert stored(keychain, outcome.account).account_id == "acct-personal"
    assert auth.code_exchanges == 1
    assert steps == [
        "waiting for the sign-in in the browser",
        "sign-in received; exchanging the code for tokens",
        "saving the login",
    ]
    with socket.socket() as again:  # the callback port is free again
        again.bind(("127.0.0.1", port))


def test_browser_login_opens_the_browser_with_the_authorize_url(
    store: SettingsStore, keychain: Keychain, cfg: OAuthConfig
) -> None:
    opened: list[str] = []

    def opener(url: str) -> bool:
        opened.append(url)
        return True

    login = browser_login(store, keychain, cfg, open_browser=True, opener=opener, timeout=0.1)
    url = login.start()
    assert opened == [url] and login.opened
    with pytest.raises(LoginTimeout):
        login.finish()


def test_browser_login_state_mismatch_fails_on_both_sides(
    store: SettingsStore, keychain: Keychain, cfg: OAuthConfig, pool: ThreadPoolExecutor
) -> None:
    login = browser_login(store, keychain, cfg)
    url = login.start()
    redirect_uri = parse_qs(urlsplit(url).query)["redirect_uri"][0]
    result = pool.submit(login.finish)
    page = httpx.get(
        redirect_uri.replace("localhost", "127.0.0.1") + "?code=ac_forged&state=forged",
        headers={"Host": urlsplit(redirect_uri).netloc},
        timeout=5,
    )
    assert page.status_code == 400
    assert "Sign-in failed" in page.text and "state mismatch" in page.text
    with pytest.raises(LoginError, match="state mismatch"):
        result.result(5)
    assert store.current.accounts == []


def test_browser_login_refused_by_the_issuer(
    store: SettingsStore, keychain: Keychain, cfg: OAuthConfig, auth: FakeOpenAIAuth, pool: ThreadPoolExecutor
) -> None:
    auth.login_error = "access_denied"
    login = browser_login(store, keychain, cfg)
    url = login.start()
    result = pool.submit(login.finish)
    page = httpx.get(url, follow_redirects=True, timeout=10)
    assert page.status_code == 400
    assert "Sign-in failed" in page.text and "access_denied" in page.text
    with pytest.raises(LoginError, match="access_denied"):
        result.result(5)
    assert auth.code_exchanges == 0
    assert store.current.accounts == []


def test_browser_login_exchange_failure_shows_in_the_tab(
    store: SettingsStore, keychain: Keychain, cfg: OAuthConfig, auth: FakeOpenAIAuth, pool: ThreadPoolExecutor
) -> None:
    auth.auto_redirect = True
    login = browser_login(store, keychain, cfg)
    url = login.start()
    result = pool.submit(login.finish)
    to_callback = httpx.get(url, timeout=5)  # the authorize step only: 302
    assert to_callback.status_code == 302
    auth.enqueue(Behavior(status=503))  # the code exchange that follows
    page = httpx.get(to_callback.headers["location"], timeout=10)
    assert page.status_code == 400
    assert "Headway could not finish the sign-in: code exchange failed (HTTP 503" in page.text
    with pytest.raises(TransientAuthError, match="HTTP 503"):
        result.result(5)
    assert store.current.accounts == []


def test_browser_login_port_busy(store: SettingsStore, keychain: Keychain, cfg: OAuthConfig) -> None:
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen(1)
        port = other.getsockname()[1]
        login = browser_login(store, keychain, cfg, port=port)
        with pytest.raises(PortBusy, match=f"port {port} is in use — another login may be in progress"):
            login.start()


def test_browser_login_times_out_and_frees_the_port(
    store: SettingsStore, keychain: Keychain, cfg: OAuthConfig
) -> None:
    login = browser_login(store, keychain, cfg, timeout=0.3)
    url = login.start()
    port = int(urlsplit(parse_qs(urlsplit(url).query)["redirect_uri"][0]).port or 0)
    started = time.monotonic()
    with pytest.raises(LoginTimeout, match="not finished within"):
        login.finish()
    assert time.monotonic() - started < 2.0
    with socket.socket() as again:
        again.bind(("127.0.0.1", port))


def test_browser_login_cancel_from_another_thread(
    store: SettingsStore, keychain: Keychain, cfg: OAuthConfig, pool: ThreadPoolExecutor
) -> None:
    login = browser_login(store, keychain, cfg)
    login.start()
    result = pool.submit(login.finish)
    time.sleep(0.1)
    started = time.monotonic()
    login.cancel()
    with pytest.raises(LoginCancelled):
        result.result(2)
    assert time.monotonic() - started < 1.0


def test_browser_login_refuses_to_start_without_a_secure_keychain(
    store: SettingsStore, keychain: Keychain, cfg: OAuthConfig
) -> None:
    keyring.set_keyring(keyring.backends.fail.Keyring())  # type: ignore[no-untyped-call]
    login = browser_login(store, keychain, cfg)
    with pytest.raises(KeychainError, match="No secure keychain"):
        login.start()


# -- DeviceLogin ---------------------------------------------------------------------------------------------------


def test_device_login_end_to_end(
    store: SettingsStore, keychain: Keychain, cfg: OAuthConfig, auth: FakeOpenAIAuth, pool: ThreadPoolExecutor
) -> None:
    auth.next_login(WORK.account_id, plan_type=WORK.plan_type, email=WORK.email)
    login = DeviceLogin(store, keychain, cfg, label="work")
    code = login.start()
    assert code.verification_url == f"{auth.url}/codex/device"
    result = pool.submit(login.finish)
    deadline = time.monotonic() + 5
    while auth.device_polls < 1 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert auth.device_polls >= 1 and not result.done()
    auth.approve_device(code.user_code)
    outcome = result.result(10)
    assert outcome.created
    assert (outcome.account.id, outcome.account.label, outcome.account.plan_type) == ("work", "work", "team")
    assert stored(keychain, outcome.account).account_id == "acct-work"

    again = DeviceLogin(store, keychain, cfg)  # the same account once more: updated, not added
    code = again.start()
    auth.approve_device(code.user_code)
    second = again.finish()
    assert not second.created and second.account.id == "work"
    assert len(store.current.accounts) == 1


def test_sign_in_requests_identify_headway_not_httpx(
    store: SettingsStore, keychain: Keychain, cfg: OAuthConfig, auth: FakeOpenAIAuth
) -> None:
    auth.next_login(WORK.account_id, plan_type=WORK.plan_type, email=WORK.email)
    login = DeviceLogin(store, keychain, cfg, label="work")
    code = login.start()
    auth.approve_device(code.user_code)
    login.finish()
    agents = {r.headers.get("user-agent") for r in auth.requests if r.method == "POST"}
    assert agents == {f"headway/{__version__}"}
    assert all(r.headers.get("originator", "headway") == "headway" for r in auth.requests)


def test_device_login_not_enabled(
    store: SettingsStore, keychain: Keychain, cfg: OAuthConfig, auth: FakeOpenAIAuth
) -> None:
    auth.device_code_enabled = False
    with pytest.raises(DeviceCodeUnavailable) as caught:
        DeviceLogin(store, keychain, cfg).start()
    assert str(caught.value) == (
        "device login is not enabled for this account: enable it in ChatGPT settings → Security, "
        "or use the browser login"
    )


def test_device_login_gives_up_after_its_timeout(
    store: SettingsStore, keychain: Keychain, cfg: OAuthConfig, auth: FakeOpenAIAuth
) -> None:
    login = DeviceLogin(store, keychain, cfg, timeout=0.3)
    login.start()
    started = time.monotonic()
    with pytest.raises(LoginTimeout):
        login.finish()
    assert time.monotonic() - started < 2.0
    assert store.current.accounts == []


def test_device_login_cancel_from_another_thread(
    store: SettingsStore, keychain: Keychain, cfg: OAuthConfig, auth: FakeOpenAIAuth, pool: ThreadPoolExecutor
) -> None:
    login = DeviceLogin(store, keychain, cfg)
    login.start()
    result = pool.submit(login.finish)
    time.sleep(0.2)
    started = time.monotonic()
    login.cancel()
    with pytest.raises(LoginCancelled):
        result.result(2)
    assert time.monotonic() - started < 1.0
    with pytest.raises(LoginCancelled):  # a cancelled login stays cancelled
        login.finish()


def test_secrets_file_backend_holds_the_token_set(
    paths: Paths, auth: FakeOpenAIAuth, cfg: OAuthConfig
) -> None:
    paths.settings_file.write_text(json.dumps({"secrets": {"backend": "file"}}))
    store = SettingsStore(paths.settings_file)
    store.load()
    keychain = Keychain(paths.keychain_service, backend="file", file_path=paths.secrets_file)
    login = DeviceLogin(store, keychain, cfg)
    code = login.start()
    auth.approve_device(code.user_code)
    outcome = login.finish()
    secrets_data = json.loads(paths.secrets_file.read_text())
    saved = TokenSet.from_json(secrets_data[account_secret_name(outcome.account.id)])
    assert saved.account_id == auth.account.account_id == outcome.account.chatgpt_account_id
    assert "access_token" not in paths.settings_file.read_text()
