"""`headway accounts …` and `headway key` as real subprocesses: keys from stdin or a hidden prompt, never in the settings;
the file backend for subprocesses, and one run through the real Secret Service."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from proxy.config.paths import Paths
from proxy.secrets.keychain import ACCESS_KEY, Keychain
from tests.support.secret_service import require_secret_service, secret_tool_lookup
from tests.tray.cli.harness import (
    ANTHROPIC_KEY,
    OPENAI_KEY,
    cli,
    cli_parallel,
    fails,
    files_under,
    mode_of,
    ok,
    read_secrets,
    read_settings,
    run_with_tty,
    seed_accounts,
)

# --------------------------------------------------------------------------- accounts add


def test_add_reads_the_key_from_stdin_and_keeps_it_out_of_the_settings(file_home: Paths) -> None:
    out = ok(
        cli("accounts", "add", "anthropic", "--label", "Work", "--api-key-stdin", input=ANTHROPIC_KEY + "\n")
    )
    assert "added work (Work, anthropic-api-key)" in out
    assert ANTHROPIC_KEY not in out

    settings_text = file_home.settings_file.read_text()
    assert ANTHROPIC_KEY not in settings_text and "sk-ant" not in settings_text
    assert read_settings(file_home)["accounts"] == [
        {"id": "work", "kind": "anthropic-api-key", "label": "Work", "enabled": True}
    ]
    assert read_secrets(file_home) == {"account:work": ANTHROPIC_KEY}
    assert mode_of(file_home.secrets_file) == 0o600 and mode_of(file_home.data_dir) == 0o700
    assert mode_of(file_home.settings_file) == 0o600 and mode_of(file_home.config_dir) == 0o700

    # There is no way to put a key on the command line (argv is visible to every user on the machine).
    err = fails(cli("accounts", "add", "openai", "--label", "X", "--api-key", OPENAI_KEY), code=2)
    assert "No such option" in err
    assert [a["id"] for a in read_settings(file_home)["accounts"]] == ["work"]


def test_add_with_a_hidden_prompt_on_a_terminal(file_home: Paths) -> None:
    code, output = run_with_tty(["accounts", "add", "openai", "--label", "Personal"], OPENAI_KEY)
    assert code == 0, output
    assert "OpenAI API key:" in output
    assert OPENAI_KEY not in output, "the key was echoed to the terminal"
    assert "added personal (Personal, openai-api-key)" in output
    assert read_secrets(file_home) == {"account:personal": OPENAI_KEY}
    assert OPENAI_KEY not in file_home.settings_file.read_text()


def test_add_warns_about_an_odd_key_and_refuses_an_empty_one(file_home: Paths) -> None:
    odd, empty = cli_parallel(
        (["accounts", "add", "anthropic", "--label", "Odd", "--api-key-stdin"], "not-a-key\n"),
        (["accounts", "add", "anthropic", "--label", "Empty", "--api-key-stdin"], "\n"),
    )
    ok(odd)
    assert "does not look like an Anthropic API key" in odd.stderr
    assert "no key given" in fails(empty)
    assert [a["id"] for a in read_settings(file_home)["accounts"]] == ["odd"]


@pytest.mark.parametrize(
    "backend",
    ["keyring.backends.fail.Keyring", "keyrings.alt.file.PlaintextKeyring"],
    ids=["none", "plaintext"],
)
def test_add_is_refused_without_a_secure_keychain(paths: Paths, tmp_path: Path, backend: str) -> None:
    result = cli(
        "accounts", "add", "anthropic", "--label", "Work", "--api-key-stdin",
        input=ANTHROPIC_KEY + "\n", env={"PYTHON_KEYRING_BACKEND": backend},
    )  # fmt: skip
    err = fails(result)
    assert "no secure keychain" in err.lower()
    assert backend in err
    assert "gnome-keyring" in err and "headway secrets backend file" in err  # the ways out, spelled out
    assert not paths.settings_file.exists() or read_settings(paths).get("accounts", []) == []
    assert not paths.secrets_file.exists()
    leaked = [p for p in files_under(tmp_path) if ANTHROPIC_KEY.encode() in p.read_bytes()]
    assert leaked == [], "the key was written in plain text"


# --------------------------------------------------------------------------- managing accounts


def test_list_order_disable_enable(file_home: Paths) -> None:
    seed_accounts(file_home)
    text, as_json = cli_parallel(["accounts", "list"], ["accounts", "list", "--json"])
    lines = ok(text).splitlines()
    assert [line.split()[:2] for line in lines] == [["1.", "work"], ["2.", "personal"], ["3.", "spare"]]
    items = json.loads(ok(as_json))
    assert [(a["id"], a["label"], a["kind"], a["family"], a["enabled"]) for a in items] == [
        ("work", "Work", "anthropic-api-key", "anthropic", True),
        ("personal", "Personal", "openai-api-key", "openai", True),
        ("spare", "Spare", "anthropic-api-key", "anthropic", True),
    ]
    assert "sk-" not in as_json.stdout

    assert ok(cli("accounts", "order", "spare", "Personal")).strip() == "order: spare, personal, work"
    assert ok(cli("accounts", "disable", "work")).strip() == "work disabled"
    assert [(a["id"], a["enabled"]) for a in read_settings(file_home)["accounts"]] == [
        ("spare", True),
        ("personal", True),
        ("work", False),
    ]

    listed, bad_order = cli_parallel(["accounts", "list"], ["accounts", "order", "nobody"])
    lines = ok(listed).splitlines()
    assert [line.split()[1] for line in lines] == ["spare", "personal", "work"]
    assert lines[2].endswith("[disabled]") and not lines[0].endswith("[disabled]")
    err = fails(bad_order)
    assert "no account 'nobody'" in err and "work (Work)" in err
    assert [a["id"] for a in read_settings(file_home)["accounts"]] == ["spare", "personal", "work"]

    assert ok(cli("accounts", "enable", "Work")).strip() == "work enabled"
    assert [a["enabled"] for a in read_settings(file_home)["accounts"]] == [True, True, True]


def test_set_key_and_remove(file_home: Paths) -> None:
    seed_accounts(file_home)
    new_key = "sk-ant-api03-" + "n" * 24
    set_key, declined, unknown = cli_parallel(
        (["accounts", "set-key", "work", "--api-key-stdin"], new_key + "\n"),
        (["accounts", "remove", "work"], "n\n"),
        ["accounts", "remove", "nobody", "--yes"],
    )
    assert "replaced the key of work (Work)" in ok(set_key)
    assert read_secrets(file_home)["account:work"] == new_key
    assert new_key not in file_home.settings_file.read_text()
    assert "Aborted" in fails(declined)
    assert "no account 'nobody'" in fails(unknown)
    assert "work" in [a["id"] for a in read_settings(file_home)["accounts"]]

    assert ok(cli("accounts", "remove", "work", "--yes")).strip() == "removed work (Work)"
    assert "work" not in [a["id"] for a in read_settings(file_home)["accounts"]]
    assert "account:work" not in read_secrets(file_home), "the secret outlived its account"
    assert set(read_secrets(file_home)) == {"account:personal", "account:spare"}


def test_access_key_is_stable_until_rotated(file_home: Paths) -> None:
    first = ok(cli("key")).strip()
    second = ok(cli("key")).strip()
    assert first == second
    assert first.startswith("hw-") and len(first) > 30
    assert read_secrets(file_home)[ACCESS_KEY] == first
    rotated = ok(cli("key", "--rotate")).strip()
    assert rotated != first and rotated.startswith("hw-")
    assert read_secrets(file_home)[ACCESS_KEY] == rotated


# --------------------------------------------------------------------------- the real Secret Service


@pytest.mark.keychain
def test_add_and_remove_through_the_real_secret_service(headway_home: Path) -> None:
    require_secret_service()
    paths = Paths.from_env()
    key = f"sk-ant-api03-{uuid.uuid4().hex}"
    name = "account:work"
    try:
        out = ok(cli("accounts", "add", "anthropic", "--label", "Work", "--api-key-stdin", input=key + "\n"))
        assert "added work" in out
        assert secret_tool_lookup(paths.keychain_service, name) == key
        assert key not in paths.settings_file.read_text()
        assert not paths.secrets_file.exists()
        ok(cli("accounts", "remove", "work", "--yes"))
        assert secret_tool_lookup(paths.keychain_service, name) is None
    finally:
        Keychain(paths.keychain_service).delete(name)


# --------------------------------------------------------------------------- accounts budget


def test_accounts_budget_sets_shows_and_clears(file_home: Paths) -> None:
    seed_accounts(file_home)
    assert "work: budget $5 a day and $50 a month" in ok(
        cli("accounts", "budget", "Work", "--daily", "5", "--monthly", "$50")
    )
    assert read_settings(file_home)["accounts"][0]["budget"] == {"daily_usd": 5.0, "monthly_usd": 50.0}
    assert "budget $5/day $50/month" in ok(cli("accounts", "list"))
    assert "work: no budget" in ok(cli("accounts", "budget", "work", "--clear"))
    assert "budget" not in read_settings(file_home)["accounts"][0]


def test_accounts_budget_refuses_bad_input_and_keeps_the_settings(file_home: Paths) -> None:
    seed_accounts(file_home)
    ok(cli("accounts", "budget", "Work", "--daily", "5"))
    before = file_home.settings_file.read_text()
    assert "not an amount in USD above 0" in fails(cli("accounts", "budget", "Work", "--daily", "0"), code=2)
    assert "not an amount in USD" in fails(cli("accounts", "budget", "Work", "--daily", "lots"), code=2)
    assert "give --daily and/or --monthly, or --clear" in fails(cli("accounts", "budget", "Work"), code=2)
    assert "--clear" in fails(cli("accounts", "budget", "Work", "--daily", "3", "--clear"), code=2)
    assert "no account" in fails(cli("accounts", "budget", "Nobody", "--daily", "3")).lower()
    err = fails(cli("accounts", "budget", "Personal", "--daily", "inf"), code=2)
    assert "above 0" in err
    assert file_home.settings_file.read_text() == before
