"""`headway analyze cache`: prompt-cache hits, breaks and their cost (:mod:`proxy.analyzer`)."""

from __future__ import annotations

from pathlib import Path

import click

from .root import DAYS, cli, env_paths, fail


@cli.group()
def analyze() -> None:
    """Look into the request log: prompt-cache hits, breaks and what they cost."""


@analyze.command("cache")
@click.option("--session", "session_id", default=None, help="Only this session id.")
@click.option(
    "--days", type=DAYS, default=7.0, show_default=True, help="How far back to look (up to 3650 days)."
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option(
    "--opencode-db",
    is_flag=False,
    flag_value="",
    default=None,
    metavar="[PATH]",
    help="Analyze OpenCode's own database instead (no PATH: $OPENCODE_DB or $XDG_DATA_HOME/opencode/opencode.db).",
)
@click.option(
    "--chart",
    "chart_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also write an SVG chart (stacked bars per turn) to this file.",
)
def analyze_cache(
    session_id: str | None, days: float, as_json: bool, opencode_db: str | None, chart_path: Path | None
) -> None:
    """Per session and turn: cache reads and writes, hit ratio, idle gaps, where a prefix broke, and the cost
    with no cache, a 5-minute cache and a 1-hour cache. Turn on dumps (settings: dumps.enabled) to see breaks."""
    from proxy.analyzer import (
        SourceError,
        analyze_headway,
        analyze_opencode,
        default_opencode_db,
        format_report,
        write_svg,
    )

    paths = env_paths()
    try:
        if opencode_db is None:
            report = analyze_headway(paths.request_log, paths.dumps_dir, days=days, session_id=session_id)
        else:
            db = Path(opencode_db).expanduser() if opencode_db else default_opencode_db()
            report = analyze_opencode(db, days=days, session_id=session_id)
    except SourceError as exc:
        raise fail(exc) from exc
    if chart_path is not None:
        write_svg(report, chart_path)
    click.echo(report.to_json() if as_json else format_report(report))
    if chart_path is not None and not as_json:
        click.echo(f"\nChart: {chart_path}")
