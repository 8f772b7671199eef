"""The ``kf-plugin`` commands that call the WeChat API: accounts, sessions, send, typing, records, window, sandbox.

See :mod:`kf_plugin.cli_api` for where credentials come from. Exit codes: 0 success, 1 a
negative answer or an API error, 2 bad input or missing configuration.
"""
from __future__ import annotations

import dataclasses
import os
import sys
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

import click

from .admin import KfAdmin
from .cli import cli, flask_app
from .cli_api import (
    _JSON,
    _MEMORY_NOTE,
    _TZ,
    _api_command,
    _fail,
    _local,
    _plugin,
    _print_json,
    _table,
)
from .config import read_setting
from .errors import KfError
from .export import FORMATS, export_records, format_for, parse_time
from .state import MemoryWindowStore
from .state.shared import open_state
from .window import WindowTracker

# -- accounts --------------------------------------------------------------------------

@cli.group()
def accounts() -> None:
    """Customer-service accounts: list, add, update, delete, invite a worker, set the avatar."""


_ONLINE_STATUS = {0: "offline", 1: "online", 2: "online (mobile)", 3: "online (PC and mobile)"}


@_api_command(accounts, "list")
@click.option("--online", is_flag=True, help="Only the workers online now, with their open sessions.")
@_JSON
@_TZ
def accounts_list(admin: KfAdmin, online: bool, as_json: bool, tz: Any) -> None:
    """List the customer-service accounts (getkflist), or with --online who is online (getonlinekflist)."""
    agents = admin.online_agents() if online else admin.agents()
    if as_json:
        return _print_json([dataclasses.asdict(a) for a in agents])
    if not agents:
        return click.echo("nobody is online" if online else "no customer-service accounts")
    if online:
        return _table(["ACCOUNT", "ID", "STATUS", "SESSIONS"], [
            [a.kf_account, a.kf_id or "-", _ONLINE_STATUS.get(a.status, str(a.status)), a.accepted_case]
            for a in agents])
    _table(["ACCOUNT", "NICKNAME", "ID", "WECHAT ID", "INVITATION"], [
        [a.kf_account, a.nickname, a.kf_id or "-", a.wx or "-",
         f"{a.invite_wx} {a.invite_status}, until {_local(a.invite_expire_time, tz)}" if a.invite_wx else "-"]
        for a in agents])


@_api_command(accounts, "add")
@click.argument("kf_account")
@click.argument("nickname")
def accounts_add(admin: KfAdmin, kf_account: str, nickname: str) -> None:
    """Create KF_ACCOUNT (prefix@the account's WeChat id) called NICKNAME."""
    admin.add_account(kf_account, nickname)
    click.echo(f"added {kf_account} ({nickname})")


@_api_command(accounts, "update")
@click.argument("kf_account")
@click.argument("nickname")
def accounts_update(admin: KfAdmin, kf_account: str, nickname: str) -> None:
    """Rename KF_ACCOUNT to NICKNAME."""
    admin.update_account(kf_account, nickname)
    click.echo(f"updated {kf_account}: now {nickname}")


@_api_command(accounts, "delete")
@click.argument("kf_account")
def accounts_delete(admin: KfAdmin, kf_account: str) -> None:
    """Delete KF_ACCOUNT (its open sessions end)."""
    admin.delete_account(kf_account)
    click.echo(f"deleted {kf_account}")


@_api_command(accounts, "invite")
@click.argument("kf_account")
@click.argument("wechat_id")
def accounts_invite(admin: KfAdmin, kf_account: str, wechat_id: str) -> None:
    """Invite the WeChat user WECHAT_ID to work as KF_ACCOUNT."""
    admin.invite_worker(kf_account, wechat_id)
    click.echo(f"invited {wechat_id} to work as {kf_account}; they accept in WeChat within 7 days")


@_api_command(accounts, "avatar")
@click.argument("kf_account")
@click.argument("image", type=click.Path(exists=True, dir_okay=False))
def accounts_avatar(admin: KfAdmin, kf_account: str, image: str) -> None:
    """Set the head image of KF_ACCOUNT from IMAGE (a JPEG of at most 5 MB)."""
    admin.upload_avatar(kf_account, image)
    click.echo(f"set the avatar of {kf_account}")


# -- sessions --------------------------------------------------------------------------

@cli.group()
def sessions() -> None:
    """Customer-service sessions: open, close, show, list, and the wait queue."""


@_api_command(sessions, "open")
@click.argument("openid")
@click.argument("kf_account")
def sessions_open(admin: KfAdmin, openid: str, kf_account: str) -> None:
    """Hand the user OPENID to KF_ACCOUNT (who must be online)."""
    admin.open_session(openid, kf_account)
    click.echo(f"opened a session: {kf_account} serves {openid}")


@_api_command(sessions, "close")
@click.argument("openid")
@click.argument("kf_account")
def sessions_close(admin: KfAdmin, openid: str, kf_account: str) -> None:
    """Close the session of KF_ACCOUNT with OPENID."""
    admin.close_session(openid, kf_account)
    click.echo(f"closed the session of {kf_account} with {openid}")


def _session_dict(openid: str, session: Any) -> dict:
    return dataclasses.asdict(session) if session is not None else {"openid": openid, "kf_account": None,
                                                                     "created": None}


@_api_command(sessions, "show")
@click.argument("openid")
@_JSON
@_TZ
def sessions_show(admin: KfAdmin, openid: str, as_json: bool, tz: Any) -> None:
    """Who serves OPENID now; exit 1 when nobody does."""
    session = admin.session(openid)
    if as_json:
        _print_json(_session_dict(openid, session))
    elif session is None:
        click.echo(f"{openid} has no open session")
    else:
        click.echo(f"{openid} is served by {session.kf_account} since {_local(session.created, tz)}")
    if session is None:
        raise click.exceptions.Exit(1)


@_api_command(sessions, "list")
@click.argument("kf_account")
@_JSON
@_TZ
def sessions_list(admin: KfAdmin, kf_account: str, as_json: bool, tz: Any) -> None:
    """The users KF_ACCOUNT serves now."""
    found = admin.sessions(kf_account)
    if as_json:
        return _print_json([dataclasses.asdict(s) for s in found])
    if not found:
        return click.echo(f"{kf_account} serves nobody")
    _table(["OPENID", "SINCE"], [[s.openid, _local(s.created, tz)] for s in found])


@_api_command(sessions, "waiting")
@_JSON
@_TZ
def sessions_waiting(admin: KfAdmin, as_json: bool, tz: Any) -> None:
    """The users waiting for a worker (WeChat lists at most 100 of them)."""
    queue = admin.waiting()
    if as_json:
        return _print_json({"count": queue.count, "users": [dataclasses.asdict(u) for u in queue.users]})
    listed = f" (the first {len(queue.users)} listed)" if len(queue.users) < queue.count else ""
    click.echo(f"{queue.count} waiting{listed}")
    if queue.users:
        _table(["OPENID", "LAST MESSAGE"], [[u.openid, _local(u.latest_time, tz)] for u in queue.users])


# -- custom messages -----------------------------------------------------------------------

@cli.group()
def send() -> None:
    """Send a customer-service message: kf-plugin send TYPE OPENID … [--as KF_ACCOUNT] [--no-strict]."""


def _menu_choices(ctx: Any, param: Any, values: Tuple[str, ...]) -> List[dict]:
    choices = []
    for value in values:
        choice_id, _, text = value.partition("=")
        if not choice_id or not text:
            raise click.BadParameter(f"{value!r} is not ID=TEXT", ctx, param)
        choices.append({"id": choice_id, "content": text})
    return choices


_THUMB = click.option("--thumb", "thumb_media_id", required=True, metavar="MEDIA_ID", help="The thumbnail's media id.")
_TITLE = click.option("--title", default="")
_DESCRIPTION = click.option("--description", default="")
# Each type: its help and its parameters, named after the fields of the type's object (WeChat's custom-send docs).
_SEND_TYPES: Dict[str, Tuple[str, List[Callable[[Any], Any]]]] = {
    "text": ("A text (it may hold <a href=…> links).", [click.argument("content")]),
    "image": ("An image by its MEDIA_ID.", [click.argument("media_id")]),
    "voice": ("A voice message by its MEDIA_ID.", [click.argument("media_id")]),
    "video": ("A video by its MEDIA_ID.", [click.argument("media_id"), _THUMB, _TITLE, _DESCRIPTION]),
    "music": ("Music played from MUSIC_URL.", [
        click.argument("musicurl", metavar="MUSIC_URL"),
        click.option("--hq-url", "hqmusicurl", help="The high-quality (Wi-Fi) URL [default: MUSIC_URL]."),
        _THUMB, _TITLE, _DESCRIPTION]),
    "news": ("A link card (one article).", [
        click.option("--title", required=True), click.option("--url", required=True, help="Where the card leads."),
        _DESCRIPTION, click.option("--picurl", default="", help="The picture's URL.")]),
    "mpnews": ("An article message from the material library, by its MEDIA_ID.", [click.argument("media_id")]),
    "mpnewsarticle": ("A published article by its ARTICLE_ID.", [click.argument("article_id")]),
    "msgmenu": ("A menu of choices the user clicks.", [
        click.option("--head", "head_content", default="", help="The text above the choices."),
        click.option("--option", "list", multiple=True, required=True, metavar="ID=TEXT", callback=_menu_choices,
                     help="A choice (repeat for each); a click comes back as a message with bizmsgmenuid ID."),
        click.option("--tail", "tail_content", default="", help="The text below the choices.")]),
    "wxcard": ("A card or coupon by its CARD_ID.", [click.argument("card_id")]),
    "miniprogrampage": ("A mini-program card (the official account's AppID option is --kf-appid here).", [
        click.option("--title", required=True), click.option("--appid", required=True, help="The mini program's AppID."),
        click.option("--pagepath", required=True, help="The page to open."), _THUMB]),
}


def _body(msgtype: str, fields: Dict[str, Any]) -> Dict[str, Any]:
    if msgtype == "music" and not fields["hqmusicurl"]:
        fields["hqmusicurl"] = fields["musicurl"]
    return {"articles": [fields]} if msgtype == "news" else fields


def _send_command(msgtype: str, help_text: str, parameters: List[Callable[[Any], Any]]) -> None:
    def run(admin: KfAdmin, openid: str, as_account: Optional[str], strict: bool, **fields: Any) -> None:
        admin.send(openid, msgtype, _body(msgtype, fields), as_account=as_account, strict=strict)
        click.echo(f"sent {msgtype} to {openid}" + (f" as {as_account}" if as_account else ""))
    run.__doc__, run.__name__ = help_text, f"send_{msgtype}"
    for decorate in reversed([
            click.argument("openid"),
            click.option("--as", "as_account", metavar="KF_ACCOUNT", help="Send as this kf account."),
            click.option("--strict/--no-strict", default=True, show_default=True,
                         help="Refuse before calling WeChat when the window tracker knows the user is "
                              "outside the 48-hour window; --no-strict sends anyway."),
            *parameters]):
        run = decorate(run)
    _api_command(send, msgtype, appid_flags=("--kf-appid",) if msgtype == "miniprogrampage" else None)(run)


for _msgtype, (_help, _parameters) in _SEND_TYPES.items():
    _send_command(_msgtype, _help, _parameters)


@_api_command(cli, "typing")
@click.argument("openid")
@click.option("--cancel", is_flag=True, help="Stop showing it.")
def typing(admin: KfAdmin, openid: str, cancel: bool) -> None:
    """Show OPENID "typing…" for up to 15 s (needs an interaction in the last 30 s)."""
    admin.typing(openid, not cancel)
    click.echo(f"stopped showing 'typing…' to {openid}" if cancel
               else f"showing 'typing…' to {openid} for up to 15 s")


# -- chat records ------------------------------------------------------------------------

@cli.group()
def records() -> None:
    """Chat records (msgrecord/getmsglist)."""


@_api_command(records, "export")
@click.option("--since", required=True, help="YYYY-MM-DD, YYYY-MM-DD HH:MM[:SS] (in --tz) or a unix time.")
@click.option("--until", help="The same forms; a date alone includes the whole day [default: now].")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="The file to write.")
@click.option("--format", "fmt", type=click.Choice(FORMATS),
              help="jsonl or csv [default: csv for *.csv, jsonl otherwise].")
@_TZ
@click.option("--page-size", default=10000, show_default=True, type=click.IntRange(1, 10000),
              help="Records asked for per request.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def records_export(admin: KfAdmin, since: str, until: Optional[str], out: str, fmt: Optional[str], tz: Any,
                   page_size: int, quiet: bool) -> None:
    """Write the chat records from --since to --until to --out, asking WeChat 24 hours at a time."""
    try:
        start = parse_time(since, tz)
        end = parse_time(until, tz, end_of_day=True) if until else int(time.time())
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--since/--until")
    if end < start:
        raise click.BadParameter("--until is before --since", param_hint="--since/--until")
    try:
        count = export_records(admin.records(start, end, page_size), out, fmt or format_for(out),
                               progress=None if quiet else sys.stderr)
    except KfError as exc:
        raise KfError(f"{exc} — nothing was written to {out}") from exc
    click.echo(f"wrote {count} record{'s' if count != 1 else ''} from {_local(start, tz)} "
               f"to {_local(end, tz)} to {out}")


# -- the 48-hour window ----------------------------------------------------------------------

@cli.command("window")
@click.argument("openid")
@_JSON
@_TZ
def window(openid: str, as_json: bool, tz: Any) -> None:
    """Whether a customer-service message to OPENID can be sent now, as the bot's window tracker knows it.

    The tracker learns from the pushes the bot handles. With KF_REDIS_URL (and KF_APPID) this reads
    the state every worker shares; without it the tracker lives in one process's memory, so a
    separate `kf-plugin window` knows nobody: the user is "unknown" and WeChat decides.
    Exit 1 when the tracker says no.
    """
    plugin = _plugin(flask_app())
    tracker = plugin.window if plugin is not None else _shared_tracker()
    status = tracker.status(openid)
    shared = not isinstance(tracker.store, MemoryWindowStore)
    if as_json:
        _print_json({**status.as_dict(), "until_local": _local(status.until, tz) if status.until else None,
                     "shared_state": shared})
    else:
        click.echo(f"{openid}: {'can send' if status.can_send else 'cannot send'} — {status.reason}")
        click.echo(f"  known:     {'yes' if status.known else 'no (unknown user)'}")
        remaining = ("unknown" if not status.known else "no limit") if status.remaining is None else status.remaining
        click.echo(f"  remaining: {remaining}")
        click.echo(f"  until:     {_local(status.until, tz) if status.until else 'unknown'}")
    if not shared:
        click.echo(_MEMORY_NOTE + ("" if plugin is not None else "; this command has seen no pushes"), err=True)
    if not status.can_send:
        raise click.exceptions.Exit(1)


def _shared_tracker() -> WindowTracker:
    redis_url, appid = os.environ.get("KF_REDIS_URL"), os.environ.get("KF_APPID")
    if not (redis_url and appid):
        return WindowTracker()
    state = open_state(redis_url, appid, read_setting(os.environ, "KF_REDIS_PREFIX"))
    return WindowTracker(state.window)


# -- the sandbox -------------------------------------------------------------------------------

@cli.command("sandbox")
@click.option("--host", default="127.0.0.1", show_default=True, help="The address to listen on.")
@click.option("--port", default=8081, show_default=True, type=click.IntRange(1, 65535))
@click.option("--appid", default="wxsandbox0000000", show_default=True, help="The AppID it accepts.")
@click.option("--secret", default="sandbox-secret", show_default=True, help="The AppSecret it accepts.")
def sandbox(host: str, port: int, appid: str, secret: str) -> None:
    """Run the WeChat API sandbox here until Ctrl-C, for trying the other commands and a bot against it."""
    from .testing.sandbox import Sandbox
    url = f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
    click.echo(f"settings for kf_plugin:\n  KF_API_BASE_URL={url}\n  KF_APPID={appid}\n  KF_SECRET={secret}")
    try:
        Sandbox(appid=appid, secret=secret).run(host, port)
    except OSError as exc:
        raise _fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}")
