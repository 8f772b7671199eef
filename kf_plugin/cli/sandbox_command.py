"""``kf-plugin sandbox``: the WeChat API sandbox as a server, seeded with agents and pushing to a bot.

Without a sub-command it serves until Ctrl-C; its sub-commands (``say``, ``accept``, ``state``, ...)
drive a running one over HTTP and are attached to this group by the package. The defaults
are the example app's demo credentials (``python -m example_app`` without ``KF_TOKEN``), so
the two talk to each other as they are.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, List, Optional, Sequence, Tuple

import click
from click.core import ParameterSource

from .common import SANDBOX_ADDRESS, fail

__all__ = ["sandbox", "DEMO_BOT", "DEMO_WECOM"]

DEFAULT_HOST, DEFAULT_PORT = SANDBOX_ADDRESS

# The example app's demo credentials and URLs (example_app.DEMO_SETTINGS and DEMO_WECOM_SETTINGS, served by
# ``python -m example_app`` on port 5000 at KF_URL and KF_WECOM_URL's defaults).
DEMO_BOT = {"appid": "wx00000000demo0000", "token": "kf-demo-token",
            "aes_key": "kfDemoEncodingAesKey0123456789abcdefghijklm", "url": "http://127.0.0.1:5000/wechat"}
DEMO_WECOM = {"corpid": "wwdemo0000000000", "secret": "kf-demo-wecom-secret", "token": "kf-demo-wecom-token",
              "aes_key": "kfDemoWeComAesKey0123456789abcdefghijklmnop", "url": "http://127.0.0.1:5000/wecom/kf"}


def _agents(ctx: Any, param: Any, specs: Tuple[str, ...]) -> List[Any]:
    from ..testing.sandbox.seeding import AgentSeed
    try:
        return [AgentSeed.parse(spec) for spec in specs]
    except ValueError as exc:
        raise click.BadParameter(str(exc), ctx, param) from None


_OPTIONS: List[Callable[[Any], Any]] = [
    click.option("--host", default=DEFAULT_HOST, show_default=True, help="The address to listen on."),
    click.option("--port", default=DEFAULT_PORT, show_default=True, type=click.IntRange(1, 65535)),
    click.option("--appid", default=DEMO_BOT["appid"], show_default=True,
                 help="The AppID it accepts (and encrypts pushes for)."),
    click.option("--secret", default="sandbox-secret", show_default=True, help="The AppSecret it accepts."),
    click.option("--agent", "agents", multiple=True, callback=_agents, metavar="KF_ACCOUNT[:STATE[:NICKNAME]]",
                 help="An agent to create (repeatable): STATE online (default), busy or offline."),
    click.option("--bot-url", default=DEMO_BOT["url"], show_default=True, help="Push users' messages here."),
    click.option("--no-bot", is_flag=True, help="Push to nobody: the sandbox only keeps the state."),
    click.option("--token", default=DEMO_BOT["token"], show_default=True, help="The bot's Token, to sign pushes."),
    click.option("--aes-key", default=DEMO_BOT["aes_key"], show_default=True,
                 help="The bot's EncodingAESKey, to encrypt pushes (safe mode)."),
    click.option("--plain", is_flag=True, help="Push unencrypted (the bot in plain mode)."),
    click.option("--account-id", default="gh_sandbox", show_default=True,
                 help="The official account's id, ToUserName of every push."),
    click.option("--corpid", default=DEMO_WECOM["corpid"], show_default=True, help="微信客服: the corp's id."),
    click.option("--corp-secret", default=DEMO_WECOM["secret"], show_default=True,
                 help="微信客服: the app secret it accepts."),
    click.option("--wecom-account", metavar="NAME", help="微信客服: a kf account to create, with this name."),
    click.option("--servicer", "servicers", multiple=True, metavar="USERID",
                 help="微信客服: a receiving servicer of that account (repeatable)."),
    click.option("--wecom-bot-url", default=DEMO_WECOM["url"], show_default=True,
                 help="微信客服: send the account's callbacks here."),
    click.option("--wecom-token", default=DEMO_WECOM["token"], show_default=True, help="微信客服: the callback Token."),
    click.option("--wecom-aes-key", default=DEMO_WECOM["aes_key"], show_default=True,
                 help="微信客服: the callback EncodingAESKey."),
]


def _with_options(command: Callable[..., Any]) -> Callable[..., Any]:
    for option in reversed(_OPTIONS):
        command = option(command)
    return command


@dataclass(frozen=True)
class Setup:
    """The server's options, as given."""

    host: str
    port: int
    appid: str
    secret: str
    agents: Sequence[Any]
    bot_url: str
    no_bot: bool
    token: str
    aes_key: str
    plain: bool
    account_id: str
    corpid: str
    corp_secret: str
    wecom_account: Optional[str]
    servicers: Sequence[str]
    wecom_bot_url: str
    wecom_token: str
    wecom_aes_key: str

    @property
    def url(self) -> str:
        return f"http://[{self.host}]:{self.port}" if ":" in self.host else f"http://{self.host}:{self.port}"


class _BadSetup(click.ClickException):
    """Options the sandbox cannot be set up with: exit 2, as for bad input."""

    exit_code = 2


@click.group("sandbox", invoke_without_command=True)
@_with_options
@click.pass_context
def sandbox(ctx: click.Context, **options: Any) -> None:
    """Run the WeChat API sandbox here until Ctrl-C; or, with a command, drive a running one.

    It answers the WeChat API (and WeCom's 微信客服 API) as WeChat does, and plays WeChat for a bot:
    the users' messages are pushed to --bot-url, signed and encrypted as WeChat does.
    """
    if ctx.invoked_subcommand is not None:
        _refuse_server_options(ctx)
        return
    setup = Setup(**options)
    served = _seeded(setup)
    _announce(setup, served)
    try:
        served.run(setup.host, setup.port)
    except OSError as exc:
        raise fail(f"cannot listen on {setup.host}:{setup.port}: {exc.strerror or exc}") from exc


def _refuse_server_options(ctx: click.Context) -> None:
    """:raises UsageError: a server option given with a command (it would be ignored)."""
    given = [param.opts[0] for param in ctx.command.params
             if param.name and ctx.get_parameter_source(param.name) == ParameterSource.COMMANDLINE]
    if given:
        raise click.UsageError(f"{given[0]} is an option of the sandbox server, not of `sandbox "
                               f"{ctx.invoked_subcommand}` (which talks to a running sandbox: see --sandbox-url)")


def _seeded(setup: Setup) -> Any:
    """The sandbox with its agents, bot and 微信客服 account.

    :raises _BadSetup: an agent WeChat would refuse, a bad URL or key.
    """
    from ..errors import ConfigError
    from ..testing.sandbox import Sandbox
    served = Sandbox(appid=setup.appid, secret=setup.secret, corpid=setup.corpid, corp_secret=setup.corp_secret)
    for seed in setup.agents:
        try:
            seed.add_to(served)
        except ValueError as exc:
            raise _BadSetup(f"--agent {seed.kf_account}: {exc}") from exc
    try:
        if not setup.no_bot:
            served.connect_bot(setup.bot_url, setup.token, encoding_aes_key=None if setup.plain else setup.aes_key,
                               account_id=setup.account_id)
    except (ValueError, ConfigError) as exc:
        raise _BadSetup(f"the bot (--bot-url, --token, --aes-key): {exc}") from exc
    try:
        if setup.wecom_account is not None:
            _seed_wecom(served.wecom, setup)
    except (ValueError, ConfigError) as exc:
        raise _BadSetup(f"微信客服 (--wecom-account, --servicer, --wecom-bot-url ...): {exc}") from exc
    return served


def _seed_wecom(wecom: Any, setup: Setup) -> None:
    """:raises ValueError: a bad account name or userid, URL, token. :raises ConfigError: a bad key."""
    open_kfid = wecom.add_account(setup.wecom_account)
    for userid in setup.servicers:
        wecom.add_servicer(open_kfid, userid)
    if not setup.no_bot:
        wecom.connect_bot(setup.wecom_bot_url, setup.wecom_token, setup.wecom_aes_key)


def _announce(setup: Setup, served: Any) -> None:
    """What the bot's settings must be, what is seeded, and how to drive it."""
    click.echo(f"settings for kf_plugin:\n  KF_API_BASE_URL={setup.url}\n  KF_APPID={setup.appid}\n"
               f"  KF_SECRET={setup.secret}\n  KF_WECOM_API_BASE_URL={setup.url}\n  KF_WECOM_CORPID={setup.corpid}\n"
               f"  KF_WECOM_SECRET={setup.corp_secret}")
    for seed in setup.agents:
        click.echo(f"agent {seed.kf_account}: {seed.state}")
    bot = served.bot
    if bot is None:
        click.echo("no bot: pushes go nowhere")
    else:
        mode = "plain" if setup.plain else "safe mode"
        click.echo(f"pushes to the bot at {bot.url} (token {setup.token!r}, {mode})")
    for open_kfid, account in served.wecom.accounts.items():
        servicers = ", ".join(account["servicers"]) or "none"
        click.echo(f"微信客服 account {open_kfid} ({account['name']}), servicers: {servicers}")
    click.echo("drive it: kf-plugin sandbox say OPENID TEXT · accept OPENID · close OPENID · state · --help")
