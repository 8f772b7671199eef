"""What the ``kf-plugin`` commands share: the Flask app they may run in, credentials, errors, output.

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
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Protocol, Sequence, Set, Tuple
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import click
from click.core import ParameterSource
from flask import Flask

from ..admin import KfAdmin
from ..client import KfClient
from ..config import SETTINGS, read_setting
from ..errors import ConfigError, KfError, OutsideWindowError, QuotaExceededError
from ..state.shared import open_state
from ..window import WindowTracker

__all__ = ["AppPlugin", "DEFAULT_SANDBOX_URL", "JSON_OPTION", "MEMORY_NOTE", "TZ_OPTION", "calls_api", "fail",
           "flask_app", "local_time", "plugin_of", "print_json", "print_table", "SANDBOX_ADDRESS", "settings_source"]

# -- the Flask app (as ``flask kf …``) -------------------------------------------------

class AppPlugin(Protocol):
    """What the commands use of the ``KfPlugin`` on the app (so the CLI need not import the extension)."""

    @property
    def admin(self) -> KfAdmin: ...

    @property
    def window(self) -> WindowTracker: ...


def flask_app() -> Optional[Flask]:
    """The Flask app when running as ``flask kf …`` (with or without an app context), else ``None``."""
    from flask import current_app, has_app_context
    from flask.cli import ScriptInfo
    if has_app_context():
        # Flask types ``current_app`` as the Flask app it stands for, so the proxy's own method is unknown
        # to a type checker.
        app: Flask = current_app._get_current_object()  # type: ignore[attr-defined]
        return app
    info = click.get_current_context().find_object(ScriptInfo)
    return info.load_app() if info is not None else None


def settings_source() -> Tuple[Mapping[str, Any], str]:
    """Where the settings come from (the app's config as ``flask kf``, else the environment), and its name."""
    app = flask_app()
    return (app.config, "in the app's config") if app is not None else (os.environ, "in the environment")


def plugin_of(app: Optional[Flask]) -> Optional[AppPlugin]:
    """The ``KfPlugin`` that ``init_app`` registered on ``app``, else ``None`` (no app, or no plugin on it)."""
    state = app.extensions.get("kf_plugin") if app is not None else None
    if state is None:
        return None
    plugin: AppPlugin = state.plugin
    return plugin


# -- options -----------------------------------------------------------------------------

JSON_OPTION = click.option("--json", "as_json", is_flag=True, help="Print JSON, for scripts.")
MEMORY_NOTE = ("note: the 48-hour window is kept in this process's memory: a separate CLI process knows only "
               "the users it has seen itself (set KF_REDIS_URL and KF_APPID to read the state the bot shares)")


def _zone(ctx: Any, param: Any, value: str) -> ZoneInfo:
    try:
        return ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise click.BadParameter(f"unknown time zone {value!r} (e.g. Asia/Shanghai, UTC)", ctx, param) from None


TZ_OPTION = click.option("--tz", default="Asia/Shanghai", show_default=True, callback=_zone, metavar="ZONE",
                         help="Time zone for the times shown and read.")

# option name → the KF_* setting it stands for
_API_SETTINGS = {"kf_appid": "KF_APPID", "kf_secret": "KF_SECRET", "kf_api_base_url": "KF_API_BASE_URL",
                 "kf_api_timeout": "KF_API_TIMEOUT"}
_CREDENTIALS = ("kf_appid", "kf_secret")


def _api_options(appid_flags: Sequence[str]) -> List[Callable[[Any], Any]]:
    return [
        click.option(*appid_flags, "kf_appid", envvar="KF_APPID", help="AppID of the official account [env KF_APPID]."),
        click.option("--secret", "kf_secret", envvar="KF_SECRET", help="AppSecret [env KF_SECRET]."),
        click.option("--api-base-url", "kf_api_base_url", envvar="KF_API_BASE_URL",
                     help=f"WeChat API base URL [env KF_API_BASE_URL; {SETTINGS['KF_API_BASE_URL'].default}]."),
        click.option("--api-timeout", "kf_api_timeout", envvar="KF_API_TIMEOUT", type=float,
                     help=f"Seconds per API call [env KF_API_TIMEOUT; {SETTINGS['KF_API_TIMEOUT'].default:g}]."),
    ]


# Where ``kf-plugin sandbox`` listens by default, and where its commands look for it.
SANDBOX_ADDRESS = ("127.0.0.1", 8081)
DEFAULT_SANDBOX_URL = f"http://{SANDBOX_ADDRESS[0]}:{SANDBOX_ADDRESS[1]}"


# -- errors ------------------------------------------------------------------------------

def fail(message: str) -> click.ClickException:
    """An error for the command to raise: ``message`` on one line of stderr, then exit 1."""
    return click.ClickException(message.replace("\n", " "))


class _Misconfigured(click.ClickException):
    """Missing or bad configuration: exit 2, as for bad input."""

    exit_code = 2


@contextmanager
def _reported() -> Iterator[None]:
    """kf_plugin errors as one line on stderr: configuration → exit 2, anything else → exit 1."""
    try:
        yield
    except ConfigError as exc:
        raise _Misconfigured(str(exc).replace("\n", " ")) from exc
    except (OutsideWindowError, QuotaExceededError) as exc:
        if exc.predicted:
            raise fail(f"{exc}; --no-strict sends anyway") from exc
        raise fail(str(exc)) from exc
    except KfError as exc:
        raise fail(str(exc)) from exc


# -- the admin facade from the credentials -------------------------------------------------

def calls_api(appid_flags: Sequence[str] = ("--appid", "--kf-appid")) -> Callable[[Callable[..., Any]], Any]:
    """Make ``f(admin, **its own parameters)`` a command callback with the credential options.

    Put it under ``@group.command(name)`` and above the command's own options. ``appid_flags``: the AppID
    option's flags, when the command has an ``--appid`` of its own.
    """
    def decorate(f: Callable[..., Any]) -> Any:
        @functools.wraps(f)  # also carries the options declared under this decorator
        def run(**params: Any) -> Any:
            options = {name: params.pop(name) for name in _API_SETTINGS}
            with _reported():
                return f(_admin(options), **params)
        for option in reversed(_api_options(appid_flags)):
            run = option(run)
        return run
    return decorate


def _admin(options: Dict[str, Any]) -> KfAdmin:
    """The facade: the app's plugin's, or one built from the options, the app's config and the environment."""
    typed = _typed_on_command_line()
    app = flask_app()
    plugin = plugin_of(app)
    if plugin is not None and not typed:
        try:
            return plugin.admin
        except KfError:
            pass  # the app has no API credentials: the environment may
    values = {key: _app_or_option(app, name, key, typed, options) for name, key in _API_SETTINGS.items()}
    missing = [name for name in _CREDENTIALS if not values[_API_SETTINGS[name]]]
    if missing:
        raise _missing_credentials(missing, app)
    return _admin_from(values, app.config if app is not None else os.environ)


def _typed_on_command_line() -> Set[str]:
    ctx = click.get_current_context()
    return {name for name in _API_SETTINGS if ctx.get_parameter_source(name) == ParameterSource.COMMANDLINE}


def _app_or_option(app: Any, name: str, key: str, typed: Set[str], options: Dict[str, Any]) -> Any:
    """A credential: the app's config (as ``flask kf``, unless typed on the command line), else the option's."""
    configured = app.config.get(key) if app is not None and name not in typed else None
    return configured if configured not in (None, "") else options[name]


def _missing_credentials(missing: List[str], app: Any) -> ConfigError:
    where = "in the app's config or the environment" if app is not None else "in the environment"
    flags = {param.name: param.opts[0] for param in click.get_current_context().command.params}
    return ConfigError(f"missing credentials: set {' and '.join(_API_SETTINGS[name] for name in missing)} "
                       f"{where}, or pass {' and '.join(flags[name] for name in missing)}")


def _admin_from(values: Mapping[str, Any], settings: Mapping[str, Any]) -> KfAdmin:
    # With KF_REDIS_URL the command shares the bot's token and 48-hour window.
    shared = open_state(settings.get("KF_REDIS_URL"), values["KF_APPID"],
                        read_setting(settings, "KF_REDIS_PREFIX"), read_setting(settings, "KF_TOKEN_SESSION_PREFIX"))
    client = KfClient(values["KF_APPID"], values["KF_SECRET"], api_base_url=read_setting(values, "KF_API_BASE_URL"),
                      timeout=read_setting(values, "KF_API_TIMEOUT"), token_store=shared.tokens,
                      token_mode=read_setting(settings, "KF_TOKEN_MODE"))
    return KfAdmin(client, window=WindowTracker(shared.window) if shared.redis is not None else None)


# -- output --------------------------------------------------------------------------------

def local_time(timestamp: Optional[float], tz: Any) -> str:
    """``timestamp`` as a local time in ``tz``, or ``-`` when there is none."""
    if not timestamp:
        return "-"
    return datetime.fromtimestamp(timestamp, tz).strftime("%Y-%m-%d %H:%M:%S %z")


def _width(text: str) -> int:
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def print_table(headers: Sequence[str], rows: List[Sequence[Any]]) -> None:
    """Columns aligned for the eye, wide (CJK) characters counting as two."""
    cells = [[str(c) for c in row] for row in [headers, *rows]]
    widths = [max(_width(row[i]) for row in cells) for i in range(len(headers))]
    for row in cells:
        click.echo("  ".join(c + " " * (w - _width(c)) for c, w in zip(row, widths)).rstrip())


def print_json(value: Any) -> None:
    click.echo(json.dumps(value, ensure_ascii=False, indent=2))
