"""``kf-plugin reload`` and ``kf-plugin rules status``: put an edited rule file in force in every worker of every
host that shares the bot's Redis, and see which rules each worker runs.

Both reach the workers through Redis alone (see :mod:`kf_plugin.state.redis_rules`): ``KF_REDIS_URL``,
``KF_APPID`` and ``KF_REDIS_PREFIX``, as ``flask kf …`` from the app's config (and the app's own Redis client).
Each worker re-reads and validates its own copy of the file at its next watch (``KF_RULES_WATCH``). Exit codes:
0 every live worker runs valid rules (``reload``: has handled the request), 1 a worker reports an error, did not
answer in time, or Redis cannot be read; 2 no Redis is configured, or a setting is invalid.
"""
from __future__ import annotations

import time
from typing import Any, Dict, List, Optional

import click

from ..config import read_setting
from ..errors import ConfigError
from ..state.redis_rules import RuleVersions, WorkerReport
from ..state.shared import open_state
from .common import JSON_OPTION, TZ_OPTION, fail, flask_app, local_time, print_json, print_table, settings_source

__all__ = ["reload", "rules", "NO_REDIS", "NO_WORKERS"]

COLUMNS = ["HOST", "PID", "RULES", "LOADED", "RELOAD", "LAST ERROR"]
NO_WORKERS = ("no worker has reported: workers report from their first request on, every KF_RULES_WATCH seconds "
              "(0 turns that off); are KF_REDIS_URL, KF_APPID and KF_REDIS_PREFIX the bot's?")
NO_REDIS = ("kf-plugin reload and rules status reach the workers through the Redis they share, and KF_REDIS_URL "
            "is not set {where}: set it (and KF_APPID) as the bot does. Without Redis each process still re-reads "
            "its rule file within KF_RULES_WATCH seconds of a change, and on SIGHUP (kill -HUP PID) where it "
            "took that signal")


class _NotConfigured(click.ClickException):
    """No Redis, or a bad setting: exit 2, as for missing configuration."""

    exit_code = 2


def _versions() -> RuleVersions:
    """The reload counter and reports of the bot's account: the app's own Redis as ``flask kf``, else the one
    the settings name.

    :raises _NotConfigured: no Redis is configured, or a ``KF_*`` setting is invalid.
    """
    app = flask_app()
    state = app.extensions.get("kf_plugin") if app is not None else None
    if state is not None and state.services.shared.redis is not None:
        settings = state.services.settings
        return RuleVersions.of(state.services.shared.redis, settings.redis_prefix, settings.appid)
    config, where = settings_source()
    try:
        url = read_setting(config, "KF_REDIS_URL")
        if not url:
            raise _NotConfigured(NO_REDIS.format(where=where))
        prefix, appid = read_setting(config, "KF_REDIS_PREFIX"), read_setting(config, "KF_APPID")
        return RuleVersions.of(open_state(url, appid or "default", prefix).redis, prefix, appid)
    except ConfigError as exc:
        raise _NotConfigured(str(exc)) from exc


def _read(call: Any) -> Any:
    """``call()``; a Redis failure as a one-line error (exit 1)."""
    try:
        return call()
    except Exception as exc:  # redis-py's errors, from whatever client the app gave
        raise fail(f"cannot reach the bot's Redis: {exc}") from exc


def _short(digest: Optional[str]) -> str:
    return digest[:12] if digest else "(Python)"


def _row(report: WorkerReport, tz: Any) -> List[Any]:
    error = f"{local_time(report.error_at, tz)} (below)" if report.error else "-"
    return [report.host, report.pid, _short(report.digest), local_time(report.loaded_at, tz), report.reload or "-",
            error]


def _show(reports: List[WorkerReport], tz: Any, as_json: bool, waiting_for: Optional[int] = None) -> None:
    if not reports and not as_json:
        return
    if as_json:
        value: Dict[str, Any] = {"workers": [vars(report) for report in reports]}
        if waiting_for is not None:
            value["request"] = waiting_for
        print_json(value)
        return
    print_table(COLUMNS, [_row(report, tz) for report in reports])
    for report in reports:
        if report.error:
            click.echo(f"\n{report.name} ({local_time(report.error_at, tz)}):\n{report.error}")
    digests = {report.digest for report in reports}
    if len(digests) > 1:
        click.echo(f"\nnote: the workers run {len(digests)} different rule sets: compare each host's rule file")


def _verdict(reports: List[WorkerReport], request: Optional[int] = None) -> None:
    """:raises click.ClickException: no worker reported, one reports an error, or one has not handled
        ``request`` (exit 1)."""
    if not reports:
        raise fail(NO_WORKERS)
    failing = [report.name for report in reports if report.error]
    late = [report.name for report in reports if request is not None and report.reload != request]
    if late:
        raise fail(f"{len(late)} of {len(reports)} workers did not answer in time: {', '.join(late)} (a busy "
                   "worker answers within KF_RULES_WATCH seconds; see kf-plugin rules status)")
    if failing:
        raise fail(f"{len(failing)} of {len(reports)} workers refused the rule file and keep their rules: "
                   f"{', '.join(failing)}")


@click.command("reload")
@click.option("--wait", default=10.0, show_default=True, type=click.FloatRange(min=0), metavar="SECONDS",
              help="How long to wait for every live worker to answer (0: do not wait).")
@TZ_OPTION
@JSON_OPTION
def reload(wait: float, tz: Any, as_json: bool) -> None:
    """Make every worker sharing the bot's Redis re-read its rule file (KF_RULES)."""
    versions = _versions()
    live = len(_read(versions.reports))
    request = _read(versions.request_reload)
    if not as_json:
        click.echo(f"reload {request} requested ({live} live workers); each re-reads and validates its own "
                   "rule file")
    if wait <= 0:
        return
    deadline = time.monotonic() + wait
    reports = _read(versions.reports)
    while any(report.reload != request for report in reports) and time.monotonic() < deadline:
        time.sleep(0.1)
        reports = _read(versions.reports)
    _show(reports, tz, as_json, request)
    _verdict(reports, request)


@click.group("rules")
def rules() -> None:
    """The rules the workers run."""


@rules.command("status")
@TZ_OPTION
@JSON_OPTION
def status(tz: Any, as_json: bool) -> None:
    """Which rule file (SHA-256 of its bytes) each live worker runs, since when, and its last error."""
    reports = _read(_versions().reports)
    _show(reports, tz, as_json)
    _verdict(reports)
