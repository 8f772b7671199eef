"""What the ``kf-plugin`` commands that call the WeChat API share: credentials, errors, output.

Credentials come from ``--appid``/``--secret``/``--api-base-url``/``--api-timeout``
or ``KF_APPID``/``KF_SECRET``/``KF_API_BASE_URL``/``KF_API_TIMEOUT``. As ``flask kf …``
the app's config comes before the environment, and without any of these options on
the command line the app's own ``KfPlugin.admin`` is used, so sends consult its
48-hour window. Exit codes: 0 success, 1 a negative answer or an API error, 2 bad
input or missing configuration.
"""
from __future__ import annotations

import functools
import json
import os
import unicodedata
from contextlib import contextmanager
from datetime import datetime
from typing import Any, Callable, Iterator, List, Optional, Sequence
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import click
from click.core import ParameterSource

from .admin import KfAdmin
from .cli import flask_app
from .client import KfClient
from .config import SETTINGS, read_setting
from .errors import ConfigError, KfError, OutsideWindowError, QuotaExceededError
from .state.shared import open_state
from .window import WindowTracker

# option name → the KF_* setting it stands for
_API_SETTINGS = {"kf_appid": "KF_APPID", "kf_secret": "KF_SECRET", "kf_api_base_url": "KF_API_BASE_URL",
                 "kf_api_timeout": "KF_API_TIMEOUT"}


def _api_options(appid_flags: Sequence[str]) -> List[Callable[[Any], Any]]:
    return [
        click.option(*appid_flags, "kf_appid", envvar="KF_APPID", help="AppID of the official account [env KF_APPID]."),
        click.option("--secret", "kf_secret", envvar="KF_SECRET", help="AppSecret [env KF_SECRET]."),
        click.option("--api-base-url", "kf_api_base_url", envvar="KF_API_BASE_URL",
                     help=f"WeChat API base URL [env KF_API_BASE_URL; {SETTINGS['KF_API_BASE_URL'].default}]."),
        click.option("--api-timeout", "kf_api_timeout", envvar="KF_API_TIMEOUT", type=float,
                     help=f"Seconds per API call [env KF_API_TIMEOUT; {SETTINGS['KF_API_TIMEOUT'].default:g}]."),
    ]


_JSON = click.option("--json", "as_json", is_flag=True, help="Print JSON, for scripts.")
_MEMORY_NOTE = ("note: the 48-hour window is kept in this process's memory: a separate CLI process knows only "
                "the users it has seen itself (set KF_REDIS_URL and KF_APPID to read the state the bot shares)")


def _zone(ctx: Any, param: Any, value: str) -> ZoneInfo:
    try:
        return ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise click.BadParameter(f"unknown time zone {value!r} (e.g. Asia/Shanghai, UTC)", ctx, param) from None


_TZ = click.option("--tz", default="Asia/Shanghai", show_default=True, callback=_zone, metavar="ZONE",
                   help="Time zone for the times shown and read.")


# -- errors and credentials ----------------------------------------------------------

def _fail(message: str, exit_code: int = 1) -> click.ClickException:
    error = click.ClickException(message.replace("\n", " "))
    error.exit_code = exit_code
    return error


@contextmanager
def _reported() -> Iterator[None]:
    """kf_plugin errors as one line on stderr: configuration → exit 2, anything else → exit 1."""
    try:
        yield
    except ConfigError as exc:
        raise _fail(str(exc), 2) from exc
    except (OutsideWindowError, QuotaExceededError) as exc:
        if exc.predicted:
            raise _fail(f"{exc}; --no-strict sends anyway") from exc
        raise _fail(str(exc)) from exc
    except KfError as exc:
        raise _fail(str(exc)) from exc


def _plugin(app: Any) -> Any:
    return getattr(app.extensions.get("kf_plugin"), "plugin", None) if app is not None else None


def _admin(options: dict) -> KfAdmin:
    """The facade: the app's plugin's, or one built from the options, the app's config and the environment."""
    ctx = click.get_current_context()
    typed = {name for name in _API_SETTINGS if ctx.get_parameter_source(name) == ParameterSource.COMMANDLINE}
    app = flask_app()
    plugin = _plugin(app)
    if plugin is not None and not typed:
        try:
            return plugin.admin
        except KfError:
            pass  # the app has no API credentials: the environment may
    values = {}
    for name, key in _API_SETTINGS.items():
        configured = app.config.get(key) if app is not None and name not in typed else None
        values[key] = configured if configured not in (None, "") else options[name]
    missing = [name for name in ("kf_appid", "kf_secret") if not values[_API_SETTINGS[name]]]
    if missing:
        where = "in the app's config or the environment" if app is not None else "in the environment"
        flags = {param.name: param.opts[0] for param in ctx.command.params}
        raise ConfigError(f"missing credentials: set {' and '.join(_API_SETTINGS[name] for name in missing)} "
                          f"{where}, or pass {' and '.join(flags[name] for name in missing)}")
    # With KF_REDIS_URL the command shares the bot's token and 48-hour window.
    settings = app.config if app is not None else os.environ
    shared = open_state(settings.get("KF_REDIS_URL"), values["KF_APPID"],
                        read_setting(settings, "KF_REDIS_PREFIX"), read_setting(settings, "KF_TOKEN_SESSION_PREFIX"))
    client = KfClient(values["KF_APPID"], values["KF_SECRET"], api_base_url=read_setting(values, "KF_API_BASE_URL"),
                      timeout=read_setting(values, "KF_API_TIMEOUT"), token_store=shared.tokens,
                      token_mode=read_setting(settings, "KF_TOKEN_MODE"))
    return KfAdmin(client, window=WindowTracker(shared.window) if shared.redis is not None else None)


def _api_command(group: click.Group, name: str,
                 appid_flags: Optional[Sequence[str]] = None) -> Callable[[Callable[..., Any]], click.Command]:
    """A subcommand of ``group`` called as ``f(admin, **its own parameters)``, with the credential options."""
    def decorate(f: Callable[..., Any]) -> click.Command:
        @functools.wraps(f)  # also carries the options declared under this decorator
        def run(**params: Any) -> Any:
            options = {name: params.pop(name) for name in _API_SETTINGS}
            with _reported():
                return f(_admin(options), **params)
        for option in reversed(_api_options(appid_flags or ("--appid", "--kf-appid"))):
            run = option(run)
        return group.command(name)(run)
    return decorate


# -- output ----------------------------------------------------------------------------

def _local(timestamp: Optional[float], tz: Any) -> str:
    if not timestamp:
        return "-"
    return datetime.fromtimestamp(timestamp, tz).strftime("%Y-%m-%d %H:%M:%S %z")


def _width(text: str) -> int:
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def _table(headers: Sequence[str], rows: List[Sequence[Any]]) -> None:
    cells = [[str(c) for c in row] for row in [headers, *rows]]
    widths = [max(_width(row[i]) for row in cells) for i in range(len(headers))]
    for row in cells:
        click.echo("  ".join(c + " " * (w - _width(c)) for c, w in zip(row, widths)).rstrip())


def _print_json(value: Any) -> None:
    click.echo(json.dumps(value, ensure_ascii=False, indent=2))
