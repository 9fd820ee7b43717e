"""Request-body JSON: orjson's speed, without refusing what parsed before or changing what it writes back."""

from __future__ import annotations

import json

import pytest

from proxy.wire import json_body


def test_round_trip_is_compact_utf8() -> None:
    value = {"model": "m", "messages": [{"content": "naïve — 日本語 🚀", "n": 1.5}]}
    written = json_body.dumps(value)
    assert written == json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()
    assert json_body.loads(written) == value


def test_what_orjson_cannot_hold_is_read_and_written_back_exactly() -> None:
    big = b'{"seed":123456789012345678901234567890}'  # beyond 64 bits: orjson would read a float
    assert json_body.loads(big) == {"seed": 123456789012345678901234567890}
    assert json_body.dumps(json_body.loads(big)) == big
    surrogate = b'{"text": "\\ud800"}'  # valid JSON syntax, no Unicode text
    assert json_body.loads(surrogate) == {"text": "\ud800"}
    with pytest.raises(UnicodeEncodeError):  # as before: the gateway answers 400 for it
        json_body.dumps({"text": "\ud800"})


@pytest.mark.parametrize("constant", [b"NaN", b"Infinity", b"-Infinity"])
def test_nan_and_infinity_are_refused(constant: bytes) -> None:
    with pytest.raises(ValueError, match="is not a JSON value"):
        json_body.loads(b'{"t": ' + constant + b"}")


def test_errors_keep_the_standard_wording() -> None:
    with pytest.raises(json.JSONDecodeError) as caught:
        json_body.loads(b'{"a": 1,\n "b": }')
    assert (caught.value.msg, caught.value.lineno, caught.value.colno) == ("Expecting value", 2, 7)
    with pytest.raises(UnicodeDecodeError):
        json_body.loads(b'{"a": "\xff"}')
