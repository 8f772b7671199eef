"""``kf-plugin sandbox say|event|accept|close|switch|agent-says|lapse|agent|add-agent|state`` and, for 微信客服,
``customer-says|servicer-takes|servicer-ends|servicer-says``: drive a running sandbox by hand, through its
``/sandbox/...`` control endpoints.

Each command is one HTTP call to ``--sandbox-url``; the sandbox applies WeChat's (or WeCom's) rules and pushes
to its bot (or sends WeCom's callback to its 微信客服 bot). Errors print one line: exit 2 for bad input (an
unknown state name, say), 1 for anything else (an unknown user, agent, account, customer or servicer, a
refusal, a bot that did not answer, no sandbox running).
"""
from __future__ import annotations

import dataclasses
import functools
import json
import time
import urllib.parse
from typing import Any, Callable, Dict, List, Optional

import click
import requests

from .common import DEFAULT_SANDBOX_URL, JSON_OPTION, fail, print_json, print_table

__all__ = ["SANDBOX_CONTROLS", "SandboxControl"]

PREFIX = "/sandbox"
# Long enough for a push to the bot (WeChat's deadline is 5 s) and the bot's own calls back to the sandbox.
TIMEOUT = 30.0


class _BadRequest(click.ClickException):
    """The sandbox found the request malformed (400): exit 2, as for bad input."""

    exit_code = 2


class SandboxControl:
    """A client of the control endpoints of the sandbox at ``url``."""

    def __init__(self, url: str):
        self.url = url.rstrip("/")

    def call(self, method: str, path: str, body: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
        """The endpoint's JSON answer.

        :raises click.ClickException: no sandbox answers at the URL (one try, no retries), an answer that is
            not the sandbox's, or the error the sandbox answered (exit 2 for a 400, else 1).
        """
        try:
            with requests.Session() as http:
                http.trust_env = False  # a loopback sandbox must never be reached through a proxy
                response = http.request(method, self.url + PREFIX + path, json=body, timeout=TIMEOUT)
        except requests.ConnectionError:
            raise fail(f"no sandbox is running at {self.url} (start one with `kf-plugin sandbox`, "
                       "or point --sandbox-url at it)") from None
        except requests.RequestException as exc:
            raise fail(f"the sandbox at {self.url} did not answer: {type(exc).__name__}") from None
        try:
            answer = response.json()
        except ValueError:
            answer = None
        if not isinstance(answer, dict) or (response.status_code != 200 and "error" not in answer):
            raise fail(f"{self.url} is not a kf_plugin sandbox (HTTP {response.status_code} to {method} "
                       f"{PREFIX}{path})")
        if response.status_code == 400:
            raise _BadRequest(str(answer["error"]))
        if response.status_code != 200:
            raise fail(str(answer["error"]))
        return answer


def _quoted(name: str) -> str:
    return urllib.parse.quote(name, safe="")


Show = Callable[[Dict[str, Any]], None]


def _controls(show: Show) -> Callable[[Callable[..., Dict[str, Any]]], Callable[..., None]]:
    """Make ``f(control, **its own parameters)``, which returns the sandbox's answer, a command callback with the
    ``--sandbox-url`` and ``--json`` options; the answer is printed by ``show`` (as JSON with ``--json``)."""
    def decorate(f: Callable[..., Dict[str, Any]]) -> Callable[..., None]:
        @click.option("--sandbox-url", default=DEFAULT_SANDBOX_URL, show_default=True, metavar="URL",
                      help="The running sandbox (as `kf-plugin sandbox` printed it).")
        @JSON_OPTION
        @functools.wraps(f)
        def run(sandbox_url: str, as_json: bool, **params: Any) -> None:
            answer = f(SandboxControl(sandbox_url), **params)
            if as_json:
                print_json(answer)
            else:
                show(answer)
        return run
    return decorate


# -- output ---------------------------------------------------------------------------------

def _describe(answer: Dict[str, Any]) -> str:
    """The bot's answer to a push, in a few words."""
    if answer["status"] != 200:
        return f"HTTP {answer['status']}: {' '.join(str(answer['xml']).split())[:200]}"
    kind = answer["message_type"]
    if kind is None:
        return "success (no reply)"
    if kind == "transfer_customer_service":
        return kind + (f" to {answer['kf_account']}" if answer["kf_account"] else "")
    if kind == "text":
        return f"text {json.dumps(answer['content'], ensure_ascii=False)}"
    return str(kind)


def _print_agent(answer: Dict[str, Any]) -> None:
    agent = answer["agent"]
    click.echo(f"{agent['kf_account']} ({agent['nickname']}): {agent['state']}, {agent['sessions']} sessions")


def _print_outcome(outcome: Dict[str, Any]) -> None:
    """The bot's answer, if a push went out, then where the user stands."""
    if "written_by" in outcome:
        click.echo(f"{outcome['written_by']} wrote to {outcome['openid']} (a chat record; the bot is not told)")
    if "closed_by" in outcome:
        click.echo(f"{outcome['closed_by']} closed the session with {outcome['openid']}")
    if outcome["answer"] is not None:
        click.echo(f"bot answered: {_describe(outcome['answer'])}")
    elif outcome["bot"] is None:
        click.echo("no bot connected: nothing was pushed")
    if outcome["with_agent"] is not None:
        where = f"with {outcome['with_agent']}"
    else:
        where = "waiting in the queue" if outcome["waiting"] else "with the bot"
    click.echo(f"{outcome['openid']}: {where}")


def _local(timestamp: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(timestamp))


def _print_state(state: Dict[str, Any]) -> None:
    bot = state["bot"]
    click.echo("bot: " + ("none" if bot is None else f"{bot['url']} ({'safe mode' if bot['safe_mode'] else 'plain'})"))
    if state["agents"]:
        print_table(["AGENT", "NICKNAME", "STATE", "SESSIONS"],
                    [[a["kf_account"], a["nickname"], a["state"], a["sessions"]] for a in state["agents"]])
    else:
        click.echo("no agents")
    click.echo(f"sessions: {len(state['sessions'])}")
    for session in state["sessions"]:
        click.echo(f"  {session['openid']} with {session['kf_account']} since {_local(session['since'])}")
    click.echo(f"waiting: {len(state['wait_queue'])}")
    for case in state["wait_queue"]:
        click.echo(f"  {case['openid']} since {_local(case['latest_time'])}")
    if state["wecom_accounts"] or state["wecom_bot"] is not None:
        click.echo(f"微信客服 bot: {state['wecom_bot'] or 'none'}")
    for account in state["wecom_accounts"]:
        servicers = ", ".join(name if receiving else f"{name} (stopped)"
                              for name, receiving in account["servicers"].items()) or "none"
        click.echo(f"微信客服 account {account['open_kfid']} ({account['name']}), servicers: {servicers}")
        for session in account["sessions"]:
            click.echo(f"  {session['external_userid']}: {_service_state(session)}")


# -- 微信客服's output --------------------------------------------------------------------------

_SERVICE_STATES = {0: "new, not handled yet", 1: "with the bot", 2: "waiting in the pool", 4: "ended"}


def _service_state(session: Dict[str, Any]) -> str:
    """A session's state in words, and by its number: ``with zhangsan (state 3)``."""
    number = session["service_state"]
    where = f"with {session['servicer']}" if number == 3 else _SERVICE_STATES.get(number, "unknown")
    return f"{where} (state {number})"


def _what_was_done(outcome: Dict[str, Any]) -> str:
    """What the call made happen: who wrote (and the message's msgid), took or ended the session."""
    customer, event = outcome["external_userid"], outcome.get("event")
    if "written_by" in outcome:
        return f"{outcome['written_by']} wrote to {customer} (msgid {outcome['msgid']})"
    if "ended_by" in outcome:
        return f"{outcome['ended_by']} ended the session with {customer}"
    if event is not None:
        taker, change = event["new_servicer_userid"], event["change_type"]
        if change == 4:
            return f"{taker} reopened the ended session with {customer}"
        source = "the pool" if change == 1 else event["old_servicer_userid"]
        return f"{taker} took {customer} from {source}"
    return f"{customer} wrote to {outcome['open_kfid']} (msgid {outcome['msgid']})"


def _print_wecom_outcome(outcome: Dict[str, Any]) -> None:
    """What was done, whether the 微信客服 bot is called back, then where the customer's session stands."""
    click.echo(_what_was_done(outcome))
    if outcome["bot"] is None:
        click.echo("no 微信客服 bot connected: no callback (the item waits for sync_msg)")
    else:
        click.echo(f"kf_msg_or_event callback to the bot at {outcome['bot']}")
    click.echo(f"{outcome['external_userid']} on {outcome['open_kfid']}: {_service_state(outcome)}")


# -- the commands ---------------------------------------------------------------------------

@click.command("state")
@_controls(_print_state)
def state(control: SandboxControl) -> Dict[str, Any]:
    """Show the agents, the sessions, the wait queue and the bot; 微信客服's accounts, sessions and bot."""
    return control.call("GET", "/state")


@click.command("say")
@click.argument("openid")
@click.argument("text")
@_controls(_print_outcome)
def say(control: SandboxControl, openid: str, text: str) -> Dict[str, Any]:
    """The user OPENID writes TEXT: pushed to the bot (or, in a session, to the agent)."""
    return control.call("POST", f"/users/{_quoted(openid)}/say", {"text": text})


@click.command("event")
@click.argument("openid")
@click.argument("event")
@click.argument("key", required=False)
@_controls(_print_outcome)
def event(control: SandboxControl, openid: str, event: str, key: Optional[str]) -> Dict[str, Any]:
    """The user OPENID triggers EVENT (CLICK with its menu KEY, subscribe, SCAN ...), pushed to the bot."""
    return control.call("POST", f"/users/{_quoted(openid)}/event", {"event": event, "key": key})


@click.command("accept")
@click.argument("openid")
@click.option("--agent", "kf_account", metavar="KF_ACCOUNT", help="Who accepts [default: the one agent online].")
@_controls(_print_outcome)
def accept(control: SandboxControl, openid: str, kf_account: Optional[str]) -> Dict[str, Any]:
    """An agent accepts OPENID (from the queue or not): the bot hears kf_create_session."""
    return control.call("POST", f"/users/{_quoted(openid)}/accept", {"kf_account": kf_account})


@click.command("close")
@click.argument("openid")
@_controls(_print_outcome)
def close(control: SandboxControl, openid: str) -> Dict[str, Any]:
    """The serving agent closes OPENID's session: the bot hears kf_close_session."""
    return control.call("POST", f"/users/{_quoted(openid)}/close")


@click.command("switch")
@click.argument("openid")
@click.argument("kf_account")
@_controls(_print_outcome)
def switch(control: SandboxControl, openid: str, kf_account: str) -> Dict[str, Any]:
    """OPENID's session moves to KF_ACCOUNT: the bot hears kf_switch_session."""
    return control.call("POST", f"/users/{_quoted(openid)}/switch", {"kf_account": kf_account})


@click.command("agent-says")
@click.argument("openid")
@click.argument("text")
@_controls(_print_outcome)
def agent_says(control: SandboxControl, openid: str, text: str) -> Dict[str, Any]:
    """The agent serving OPENID writes TEXT (a chat record; WeChat does not tell the bot)."""
    return control.call("POST", f"/users/{_quoted(openid)}/agent-says", {"text": text})


@click.command("lapse")
@click.argument("openid")
@_controls(_print_outcome)
def lapse(control: SandboxControl, openid: str) -> Dict[str, Any]:
    """OPENID's session lapses, as after 30 minutes without a close: no event; the next text reaches the bot."""
    return control.call("POST", f"/users/{_quoted(openid)}/lapse")


@click.command("agent")
@click.argument("kf_account")
@click.argument("state_name", metavar="STATE")
@_controls(_print_agent)
def agent(control: SandboxControl, kf_account: str, state_name: str) -> Dict[str, Any]:
    """Set agent KF_ACCOUNT online, busy (online, but never picked by kf_plugin) or offline."""
    return control.call("PUT", f"/agents/{_quoted(kf_account)}", {"state": state_name})


@click.command("add-agent")
@click.argument("spec", metavar="KF_ACCOUNT[:STATE[:NICKNAME]]")
@_controls(_print_agent)
def add_agent(control: SandboxControl, spec: str) -> Dict[str, Any]:
    """Create an agent, bound to a WeChat user, in STATE (online by default): wang@gh_test:busy:小王."""
    from ..testing.sandbox.seeding import AgentSeed
    try:
        seed = AgentSeed.parse(spec)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="KF_ACCOUNT[:STATE[:NICKNAME]]") from None
    return control.call("POST", "/agents", dataclasses.asdict(seed))


# -- 微信客服 ------------------------------------------------------------------------------------

def _customer(open_kfid: str, external_userid: str) -> str:
    return f"/wecom/{_quoted(open_kfid)}/customers/{_quoted(external_userid)}"


@click.command("customer-says")
@click.argument("open_kfid")
@click.argument("external_userid")
@click.argument("text")
@click.option("--menu-id", metavar="ID", help="The option clicked in a menu the bot sent the customer.")
@_controls(_print_wecom_outcome)
def customer_says(control: SandboxControl, open_kfid: str, external_userid: str, text: str,
                  menu_id: Optional[str]) -> Dict[str, Any]:
    """The 微信客服 customer EXTERNAL_USERID writes TEXT to OPEN_KFID: a kf_msg_or_event callback to the bot."""
    return control.call("POST", _customer(open_kfid, external_userid) + "/say", {"text": text, "menu_id": menu_id})


@click.command("servicer-takes")
@click.argument("open_kfid")
@click.argument("external_userid")
@click.argument("servicer")
@_controls(_print_wecom_outcome)
def servicer_takes(control: SandboxControl, open_kfid: str, external_userid: str, servicer: str) -> Dict[str, Any]:
    """SERVICER takes EXTERNAL_USERID in WeCom's client: from the pool, from another servicer or reopening an
    ended session (a session_status_change event)."""
    return control.call("POST", _customer(open_kfid, external_userid) + "/servicer-takes", {"servicer": servicer})


@click.command("servicer-ends")
@click.argument("open_kfid")
@click.argument("external_userid")
@_controls(_print_wecom_outcome)
def servicer_ends(control: SandboxControl, open_kfid: str, external_userid: str) -> Dict[str, Any]:
    """The servicer serving EXTERNAL_USERID ends the session (a session_status_change event)."""
    return control.call("POST", _customer(open_kfid, external_userid) + "/servicer-ends")


@click.command("servicer-says")
@click.argument("open_kfid")
@click.argument("external_userid")
@click.argument("text")
@_controls(_print_wecom_outcome)
def servicer_says(control: SandboxControl, open_kfid: str, external_userid: str, text: str) -> Dict[str, Any]:
    """The servicer serving EXTERNAL_USERID writes TEXT from WeCom's client (a message the bot can sync)."""
    return control.call("POST", _customer(open_kfid, external_userid) + "/servicer-says", {"text": text})


SANDBOX_CONTROLS: List[click.Command] = [state, say, event, accept, close, switch, agent_says, lapse, agent, add_agent,
                                         customer_says, servicer_takes, servicer_ends, servicer_says]
