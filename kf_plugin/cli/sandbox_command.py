"""``kf-plugin sandbox``: the WeChat API sandbox as a server, to try the other commands and a bot against."""
from __future__ import annotations

import click

from .common import fail

__all__ = ["sandbox"]


@click.command("sandbox")
@click.option("--host", default="127.0.0.1", show_default=True, help="The address to listen on.")
@click.option("--port", default=8081, show_default=True, type=click.IntRange(1, 65535))
@click.option("--appid", default="wxsandbox0000000", show_default=True, help="The AppID it accepts.")
@click.option("--secret", default="sandbox-secret", show_default=True, help="The AppSecret it accepts.")
def sandbox(host: str, port: int, appid: str, secret: str) -> None:
    """Run the WeChat API sandbox here until Ctrl-C, for trying the other commands and a bot against it."""
    from ..testing.sandbox import Sandbox
    url = f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
    click.echo(f"settings for kf_plugin:\n  KF_API_BASE_URL={url}\n  KF_APPID={appid}\n  KF_SECRET={secret}")
    try:
        Sandbox(appid=appid, secret=secret).run(host, port)
    except OSError as exc:
        raise fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
