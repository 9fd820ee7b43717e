"""Headway's overhead, measured against a direct connection to the same mock upstream in the same run.

    python -m benchmarks            # thorough, under 3 minutes
    python -m benchmarks --quick    # small counts, under 30 seconds
    python -m benchmarks --json     # only the JSON line

Three processes take part: this one (a lean asyncio client), a mock Anthropic upstream
(:mod:`benchmarks.mock_upstream`) and ``headway serve`` with a throwaway ``HEADWAY_HOME``. Every figure is taken
twice, straight to the mock and through the gateway, and reported side by side. See ``benchmarks/README.md``.
"""
