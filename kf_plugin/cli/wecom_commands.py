"""``kf-plugin wecom accounts|link|servicers|state|send``: 微信客服 through the WeCom API.

The credentials are ``KF_WECOM_CORPID`` and ``KF_WECOM_SECRET``, the API is ``KF_WECOM_API_BASE_URL`` and each
call waits ``KF_API_TIMEOUT``: from the environment, or as ``flask kf wecom …`` from the app's config (an app
serving 微信客服 lends its own client, sharing its token). Exit codes: 0 success, 1 an API error (its errcode and
meaning on one line), 2 bad input or missing configuration.
"""
from __future__ import annotations

import dataclasses
import functools
from contextlib import contextmanager
from typing import Any, Callable, Dict, Iterator, List, Optional

import click

from ..config import read_setting
from ..errors import ConfigError, KfError
from ..wecom.api import KfAccount, Servicer, ServiceState, State, WeComKf
from ..wecom.client import WeComClient
from .common import JSON_OPTION, fail, flask_app, print_json, print_table, settings_source

__all__ = ["wecom"]

_CREDENTIALS = ("KF_WECOM_CORPID", "KF_WECOM_SECRET")
#: What each service state means (WeCom's service_state/get), for the eye.
STATE_MEANINGS = {
    State.NEW: "not handled yet",
    State.BOT: "with the bot",
    State.POOL: "waiting in the pool for a servicer",
    State.HUMAN: "with a servicer",
    State.ENDED: "ended; the customer's next message starts a new session",
}
_SERVICER_STATUS = {0: "receiving", 1: "stopped"}
_STOP_TYPE = {0: "stopped", 1: "suspended"}


class _Misconfigured(click.ClickException):
    """Missing or bad configuration, or a bad argument: exit 2, as for bad input."""

    exit_code = 2


@click.group()
def wecom() -> None:
    """微信客服 (WeChat customer service through WeCom): accounts, links, servicers, sessions, sending."""


# -- the API from the settings ---------------------------------------------------------------

def _kf() -> WeComKf:
    """The app's 微信客服 API as ``flask kf`` when the app serves it, else one built from the settings.

    :raises ConfigError: KF_WECOM_CORPID or KF_WECOM_SECRET is missing, or a setting is invalid.
    """
    app = flask_app()
    state = app.extensions.get("kf_plugin") if app is not None else None
    channel = state.wecom if state is not None else None
    if channel is not None:
        api: WeComKf = channel.api
        return api
    settings, where = settings_source()
    missing = [name for name in _CREDENTIALS if not settings.get(name)]
    if missing:
        raise ConfigError(f"missing settings: set {' and '.join(missing)} {where} (the corp ID and the secret of "
                          "the WeCom app with 微信客服 API permission)")
    # The CLI keeps its token in memory: gettoken answers the token the bot holds while it lives, so
    # fetching one here never invalidates the bot's.
    return WeComKf(WeComClient(str(settings["KF_WECOM_CORPID"]), str(settings["KF_WECOM_SECRET"]),
                               api_base_url=read_setting(settings, "KF_WECOM_API_BASE_URL"),
                               timeout=read_setting(settings, "KF_API_TIMEOUT")))


@contextmanager
def _reported() -> Iterator[None]:
    """Errors as one line on stderr: configuration and bad arguments → exit 2, API and network errors → exit 1."""
    try:
        yield
    except ConfigError as exc:
        raise _Misconfigured(str(exc).replace("\n", " ")) from exc
    except KfError as exc:
        raise fail(str(exc)) from exc
    except ValueError as exc:
        # WeComKf checks its arguments before it calls WeCom (a scene's characters, say).
        raise _Misconfigured(str(exc).replace("\n", " ")) from exc


def _calls_wecom(f: Callable[..., Any]) -> Callable[..., Any]:
    """Make ``f(kf, **its parameters)`` a command callback that reports errors by exit code."""
    @functools.wraps(f)
    def run(**params: Any) -> Any:
        with _reported():
            return f(_kf(), **params)
    return run


# -- accounts and links ----------------------------------------------------------------------

def _all_accounts(kf: WeComKf) -> List[KfAccount]:
    """Every kf account: WeCom lists at most 100 a page."""
    found: List[KfAccount] = []
    while True:
        page = kf.accounts(offset=len(found), limit=100)
        found.extend(page)
        if len(page) < 100:
            return found


@wecom.command("accounts")
@JSON_OPTION
@_calls_wecom
def accounts(kf: WeComKf, as_json: bool) -> None:
    """List the corp's kf accounts: open_kfid and name."""
    found = _all_accounts(kf)
    if as_json:
        print_json([dataclasses.asdict(a) for a in found])
    elif not found:
        click.echo("no kf accounts")
    else:
        print_table(["OPEN_KFID", "NAME"], [[a.open_kfid, a.name] for a in found])


@wecom.command("link")
@click.argument("open_kfid")
@click.option("--scene", default="", metavar="S",
              help="Up to 32 characters of 0-9 A-Z a-z _ -; it comes back in the enter_session event.")
@_calls_wecom
def link(kf: WeComKf, open_kfid: str, scene: str) -> None:
    """Print the contact-way URL of OPEN_KFID (for a QR code, a menu or a page)."""
    click.echo(kf.contact_way(open_kfid, scene))


# -- servicers -------------------------------------------------------------------------------

def _servicer_dict(servicer: Servicer) -> Dict[str, Any]:
    return {key: value for key, value in dataclasses.asdict(servicer).items() if value is not None}


def _status(servicer: Servicer) -> str:
    if servicer.status is None:
        return "-"
    status = _SERVICER_STATUS.get(servicer.status, str(servicer.status))
    if servicer.status == 1 and servicer.stop_type is not None:
        status = _STOP_TYPE.get(servicer.stop_type, status)
    return status


@wecom.command("servicers")
@click.argument("open_kfid")
@JSON_OPTION
@_calls_wecom
def servicers(kf: WeComKf, open_kfid: str, as_json: bool) -> None:
    """List the servicers of OPEN_KFID (userid or department) and whether each is receiving customers."""
    found = kf.servicers(open_kfid)
    if as_json:
        print_json([_servicer_dict(s) for s in found])
    elif not found:
        click.echo(f"{open_kfid} has no servicers")
    else:
        print_table(["USERID", "STATUS"], [
            [s.userid if s.userid is not None else f"department {s.department_id}", _status(s)] for s in found])


# -- sessions and sending --------------------------------------------------------------------

def _named(number: int) -> Optional[State]:
    try:
        return State(number)
    except ValueError:
        return None  # a state WeCom added after this release


def _state_dict(open_kfid: str, external_userid: str, found: ServiceState) -> Dict[str, Any]:
    known = _named(found.state)
    return {"open_kfid": open_kfid, "external_userid": external_userid, "state": found.state,
            "name": known.name.lower() if known is not None else None, "servicer_userid": found.servicer_userid}


def _state_line(found: ServiceState) -> str:
    state = _named(found.state)
    if state is None:
        return f"state {found.state} (unknown to kf_plugin)"
    served = f", servicer {found.servicer_userid}" if found.servicer_userid else ""
    return f"state {int(state)} {state.name.lower()} ({STATE_MEANINGS[state]}){served}"


@wecom.command("state")
@click.argument("open_kfid")
@click.argument("external_userid")
@JSON_OPTION
@_calls_wecom
def state(kf: WeComKf, open_kfid: str, external_userid: str, as_json: bool) -> None:
    """Where the session of EXTERNAL_USERID with OPEN_KFID is (0 new … 4 ended) and which servicer has it."""
    found = kf.service_state(open_kfid, external_userid)
    if as_json:
        print_json(_state_dict(open_kfid, external_userid, found))
    else:
        click.echo(f"{external_userid}: {_state_line(found)}")


@wecom.command("send")
@click.argument("open_kfid")
@click.argument("external_userid")
@click.argument("text")
@_calls_wecom
def send(kf: WeComKf, open_kfid: str, external_userid: str, text: str) -> None:
    """Send TEXT to EXTERNAL_USERID as OPEN_KFID and print its msgid.

    WeCom takes it in states 0 and 1 only, up to 5 messages within 48 hours of the customer's last one.
    """
    click.echo(kf.send_text(open_kfid, external_userid, text))
