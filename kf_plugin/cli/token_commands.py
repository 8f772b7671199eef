"""``kf-plugin token show|refresh``: the access token the bot's workers share."""
from __future__ import annotations

import time
from typing import Any

import click

from ..admin import KfAdmin
from ..state import MemoryTokenStore
from .common import JSON_OPTION, TZ_OPTION, calls_api, local_time, print_json

__all__ = ["token"]


@click.group()
def token() -> None:
    """The access token: show it, or renew it."""


def _show(admin: KfAdmin, reveal: bool, as_json: bool, tz: Any) -> None:
    tokens = admin.client.tokens
    info = tokens.info(reveal)
    shared = not isinstance(tokens.store, MemoryTokenStore)
    left = info.expires_at - tokens.clock() if info.expires_at else None
    if as_json:
        print_json({"mode": info.mode, "expires_at": info.expires_at, "seconds_left": left, "leader": info.leader,
                    "this_process": info.me, "shared": shared, **({"access_token": info.token} if reveal else {})})
        return
    click.echo(f"mode:        {info.mode}")
    click.echo(f"expires:     {local_time(info.expires_at, tz)}" + (f" ({left:.0f} s left)" if left is not None else
                                                                      " (no token stored)"))
    click.echo(f"leader:      {info.leader or 'none (the renewal job runs in the bot)'}")
    click.echo(f"this process: {info.me}")
    click.echo(f"storage:     {'shared (Redis)' if shared else 'this process only (set KF_REDIS_URL to share)'}")
    if reveal:
        click.echo(f"token:       {info.token}")


@token.command("show")
@calls_api()
@click.option("--reveal", is_flag=True, help="Print the token itself too.")
@JSON_OPTION
@TZ_OPTION
def token_show(admin: KfAdmin, reveal: bool, as_json: bool, tz: Any) -> None:
    """When the token expires, its mode, and which process renews it (never the token, unless --reveal)."""
    _show(admin, reveal, as_json, tz)


@token.command("refresh")
@calls_api()
@click.option("--force", is_flag=True,
              help="Have WeChat invalidate the current token and issue a new one (stable mode: 20 a day).")
@JSON_OPTION
@TZ_OPTION
def token_refresh(admin: KfAdmin, force: bool, as_json: bool, tz: Any) -> None:
    """Make sure a valid token is stored (fetching one if needed); with --force, replace it."""
    tokens = admin.client.tokens
    started = time.monotonic()
    if force:
        tokens.force_refresh()
    else:
        tokens.current()
    if not as_json:
        click.echo(f"{'forced a new token' if force else 'a valid token is stored'} "
                   f"({time.monotonic() - started:.1f} s)")
    _show(admin, False, as_json, tz)
