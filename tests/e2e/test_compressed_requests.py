"""Compressed request bodies from real HTTP clients → a real `headway serve` → the fake Codex backend.

Codex clients signed in to ChatGPT and pi's Codex transport send /responses bodies as zstd: Node 22 does here what
pi does (``zlib.zstdCompressSync`` of the JSON, ``fetch`` with ``content-encoding: zstd``, the event stream read
back). curl sends a gzip body. The backend must get the JSON uncompressed, and each client the model's reply.
"""

from __future__ import annotations

import gzip
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakes.codex import FakeCodex
from tests.support.agents import require_agent
from tests.support.chatgpt_gateway import chatgpt_gateway_process
from tests.support.gateway import GatewayProcess

pytestmark = [pytest.mark.keychain, pytest.mark.agents]

REPLY = "Compressed reply 7d41: served through Headway."
INSTRUCTIONS = "You are a coding agent. " * 400  # a long system prompt: the kind of body worth compressing

# pi's Codex transport, reduced to what reaches the wire: the body zstd-compressed, a streamed answer read back.
NODE_CLIENT = r"""
const zlib = require("node:zlib");
const [url, key, instructions] = process.argv.slice(2);
const body = JSON.stringify({
  model: "gpt-5.1-codex", instructions, stream: true, store: false,
  input: [{ role: "user", content: [{ type: "input_text", text: "Say hello." }] }],
});
const compressed = zlib.zstdCompressSync(Buffer.from(body));
(async () => {
  const answer = await fetch(url + "/v1/responses", {
    method: "POST",
    headers: { authorization: "Bearer " + key, "content-type": "application/json", "content-encoding": "zstd",
               accept: "text/event-stream" },
    body: compressed,
  });
  const text = await answer.text();
  const deltas = text.split("\n").filter((l) => l.startsWith("data: ")).map((l) => JSON.parse(l.slice(6)))
    .filter((e) => e.type === "response.output_text.delta").map((e) => e.delta).join("");
  console.log(JSON.stringify({ status: answer.status, sent: compressed.length, plain: body.length, deltas }));
})().catch((err) => { console.error(err); process.exit(1); });
"""


@pytest.fixture
def served() -> Iterator[tuple[GatewayProcess, FakeCodex]]:
    with chatgpt_gateway_process([("work", "acct-w")], reply=REPLY) as pair:
        yield pair


def test_a_zstd_body_the_way_pi_sends_it(served: tuple[GatewayProcess, FakeCodex], tmp_path: Path) -> None:
    gateway, codex = served
    node = require_agent("node22")
    script = tmp_path / "client.js"
    script.write_text(NODE_CLIENT)
    done = subprocess.run(
        [str(node), str(script), gateway.url, gateway.key, INSTRUCTIONS],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["status"] == 200 and seen["deltas"] == REPLY
    assert seen["sent"] < seen["plain"] / 10  # it really went compressed
    sent = codex.requests[-1]
    assert sent.path == "/backend-api/codex/responses"
    assert "content-encoding" not in sent.headers
    assert sent.json["instructions"] == INSTRUCTIONS


def test_a_gzip_body_from_curl(served: tuple[GatewayProcess, FakeCodex], tmp_path: Path) -> None:
    gateway, codex = served
    request = {"model": "gpt-5.1-codex", "instructions": INSTRUCTIONS, "input": "Say hello.", "store": False}
    body = tmp_path / "body.json.gz"
    body.write_bytes(gzip.compress(json.dumps(request).encode()))
    done = subprocess.run(
        [
            "curl", "--silent", "--show-error", "--fail-with-body", f"{gateway.url}/v1/responses",
            "-H", f"authorization: Bearer {gateway.key}",
            "-H", "content-type: application/json",
            "-H", "content-encoding: gzip",
            "--data-binary", f"@{body}",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    answer = json.loads(done.stdout)
    texts = [c["text"] for item in answer["output"] if item["type"] == "message" for c in item["content"]]
    assert texts == [REPLY]
    assert codex.requests[-1].json["instructions"] == INSTRUCTIONS
    assert "content-encoding" not in codex.requests[-1].headers
