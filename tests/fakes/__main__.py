"""Run one fake upstream standalone until SIGINT / SIGTERM (for benchmarks and manual poking).

    python -m tests.fakes anthropic --port 0 --events 50 --delay-ms 5

Prints the server's URL as the first line of stdout, then serves every request with the same behaviour.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from types import FrameType

from tests.fakes.anthropic import FakeAnthropic
from tests.fakes.openai import FakeOpenAI
from tests.fakes.server import DEFAULT_TEXT, Behavior, FakeServer


def _text_for(events: int) -> str:
    """A text that splits into `events` non-empty deltas."""
    if events <= len(DEFAULT_TEXT):
        return DEFAULT_TEXT
    return "".join(f"w{i} " for i in range(events))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.fakes", description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=["anthropic", "openai"])
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0 picks a free one)")
    parser.add_argument("--events", type=int, default=3, help="text deltas per streamed answer")
    parser.add_argument(
        "--delay-ms", type=float, default=0.0, help="pause before each streamed event after the first"
    )
    args = parser.parse_args(argv)

    default = Behavior(text=_text_for(args.events), chunks=args.events, delay=args.delay_ms / 1000)
    fake: FakeServer = (FakeAnthropic if args.kind == "anthropic" else FakeOpenAI)(
        default=default, port=args.port, keep_requests=100
    )
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    with fake:
        print(fake.url, flush=True)
        stop.wait()
    print(f"{args.kind} fake stopped after {fake.request_count} request(s)", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
