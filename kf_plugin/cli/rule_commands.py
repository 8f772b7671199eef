"""``kf-plugin check|route|push``: the rule file, which rule takes a message, and a signed push to a webhook.

Exit codes: 0 success, 1 the command ran but the answer is negative (no rule
matched, a push was refused), 2 bad input (invalid rule file, bad options).
"""
from __future__ import annotations

import datetime as dt
import time
from typing import TYPE_CHECKING, Any, Dict, List, Mapping, Optional, Tuple
from zoneinfo import ZoneInfo

import click
from click.core import ParameterSource

from ..config import Settings
from ..errors import BadPush, ConfigError, KfError, RuleFileError
from ..folding import FULL
from ..handoff import Handoff
from ..loader import load_rules
from ..messages import folded_text_of, text_of
from ..queueing import QueuePolicy
from ..replies import render_reply, to_reply
from ..router import Match, MessageRouter
from ..rules import Rule, RuleSet, Transfer
from ..services import check_api_rules
from ..webhook import parse_push
from ..wecom.texts import WeComTexts
from .common import flask_app, settings_source

if TYPE_CHECKING:
    from ..testing import PushSigner

__all__ = ["check", "push", "route"]


def _rules_path(value: Optional[str]) -> str:
    if value:
        return value
    path = settings_source()[0].get("KF_RULES")
    if not path:
        raise click.UsageError("no rule file given: pass FILE or set KF_RULES")
    return str(path)


def _load(path: Optional[str]) -> RuleSet:
    try:
        return load_rules(_rules_path(path))
    except RuleFileError as exc:
        click.echo(str(exc), err=True)
        raise click.exceptions.Exit(2) from exc


def _message_options(command: Any) -> Any:
    options = [
        click.option("--text", help="A text message saying this."),
        click.option("--event", help="An event push of this type (CLICK, subscribe, SCAN, ...)."),
        click.option("--key", help="The event's EventKey (menu key, QR scene, ...)."),
        click.option("--xml", "xml_file", type=click.File("r", encoding="utf-8"), help="A push read from a file."),
        click.option("--from", "sender", default="oUser0123456789", show_default=True,
                     help="The sender's openid."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _build_xml(text: Optional[str], event: Optional[str], key: Optional[str], xml_file: Any, sender: str) -> str:
    from ..testing import message_xml
    given = [name for name, value in (("--text", text), ("--event", event), ("--xml", xml_file)) if value is not None]
    if len(given) != 1:
        raise click.UsageError("give exactly one of --text, --event or --xml")
    if key is not None and event is None:
        raise click.UsageError("--key goes with --event")
    if xml_file is not None:
        return str(xml_file.read())
    if event is not None:
        return message_xml(event=event, key=key, sender=sender)
    return message_xml(text=text, sender=sender)


# -- check ---------------------------------------------------------------------------------

@click.command()
@click.argument("file", required=False)
def check(file: Optional[str]) -> None:
    """Validate a rule file (default: $KF_RULES) and summarise it."""
    rules = _load(file)
    active = len(rules.active)
    click.echo(f"{rules.source}: valid, {len(rules.rules)} rules ({active} enabled)")
    for rule in rules.rules:
        state = "" if rule.enabled else "  [disabled]"
        click.echo(f"  {rule.name}: {_condition(rule)} → {rule.action}{state}")
    if rules.folding != FULL:
        click.echo(f"  keywords folded: {rules.folding}")
    if rules.fallback_text:
        click.echo(f"  fallback text: {rules.fallback_text!r}")
    for line in _queue_lines(rules.queue):
        click.echo(f"  {line}")
    if rules.context is not None:
        click.echo(f"  context for the agent: {rules.context.text!r}")
    for line in _wecom_lines(rules.wecom):
        click.echo(f"  微信客服 {line}")
    if rules.unanswered_triggers:
        triggers = ", ".join(f"{rule.name} at {rule.after_unanswered}" for rule in rules.unanswered_triggers)
        click.echo(f"  unanswered messages in a row, counted after the bot's handlers: {triggers}")
    settings, where = settings_source()
    try:
        check_api_rules(rules, Settings.read(settings), where)
    except ConfigError as exc:
        click.echo(f"warning: {exc}", err=True)


def _condition(rule: Rule) -> str:
    if rule.after_unanswered is not None:
        count = rule.after_unanswered
        return f"after {count} unanswered message{'' if count == 1 else 's'} in a row"
    return repr(rule.filter)


def _duration(seconds: float) -> str:
    """``600.0`` → ``10m``: the largest unit that gives a whole number, as the rule file writes durations."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"


def _wecom_lines(texts: WeComTexts) -> List[str]:
    """The ``wecom:`` texts that are set, one a line (a welcome by scene: one line a scene)."""
    welcome = texts.welcome_text
    scenes = welcome.items() if isinstance(welcome, Mapping) else [("", welcome)] if welcome else []
    lines = [f"welcome{f' ({scene})' if scene else ''}: {text!r}" for scene, text in scenes]
    named = (("queue", texts.queue_text), ("taken", texts.taken_text), ("end", texts.end_text))
    return lines + [f"{name}: {text!r}" for name, text in named if text is not None]


def _said(text: Optional[str]) -> str:
    return f" → {text!r}" if text is not None else " (no text)"


def _queue_lines(queue: QueuePolicy) -> List[str]:
    """The queue policy, one setting a line."""
    lines = ["while queued: " + ("quiet, the bot's own handlers do not answer" if queue.quiet
                                 else "the bot's own handlers answer")]
    if queue.notice is None and queue.notice_fallback is None:
        lines.append("queue notice: none")
    else:
        shown = " else ".join(repr(text) for text in (queue.notice, queue.notice_fallback) if text is not None)
        lines.append(f"queue notice: {shown}, at most every {_duration(queue.notice_every)}")
    cancel = ", ".join(repr(keyword) for keyword in queue.cancel)
    lines.append(f"cancel keywords: {cancel}{_said(queue.cancel_text)}" if cancel else "cancel keywords: none")
    lines.append(f"queue timeout: after {_duration(queue.timeout)}{_said(queue.timeout_text)}"
                 if queue.timeout is not None else "queue timeout: none")
    return lines


# -- route ---------------------------------------------------------------------------------

@click.command()
@click.argument("file", required=False)
@_message_options
@click.option("--at", metavar="TIME", help="Route as at this time, e.g. \"2026-11-28 10:00\" (in the business "
                                            "hours' time zone unless it says otherwise) [default: now].")
def route(file: Optional[str], text: Optional[str], event: Optional[str], key: Optional[str],
          xml_file: Any, sender: str, at: Optional[str]) -> None:
    """Show which rule of FILE takes a message, why, and the reply it sends (business hours included).

    Without the WeChat API, agent-aware options answer as when the online list is unknown: they transfer.
    """
    rules = _load(file)
    moment = _moment(rules, at)
    message = _parsed(_build_xml(text, event, key, xml_file, sender))
    said = text_of(message)
    if said is not None:
        click.echo(f"text {said!r}, folded for keywords ({rules.folding}): {folded_text_of(message, rules.folding)!r}")
    match = _dispatch(rules, moment, message)
    rule = _rule_of(rules, match)
    if rule is None:
        click.echo("no rule takes this message; the webhook would pass it to the bot's own handlers "
                   "and answer 'success' if none answers")
        for trigger in rules.unanswered_triggers:
            assert trigger.after_unanswered is not None
            click.echo(f"  after the bot's handlers: rule {trigger.name!r} acts on the "
                       f"{_ordinal(trigger.after_unanswered)} unanswered message in a row "
                       f"({trigger.origin or rules.source})")
        raise click.exceptions.Exit(1)
    _explain(rules, rule, moment)
    click.echo("reply:")
    click.echo(render_reply(to_reply(match.result, message)))


def _ordinal(number: int) -> str:
    suffix = "th" if 10 <= number % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(number % 10, "th")
    return f"{number}{suffix}"


def _moment(rules: RuleSet, at: Optional[str]) -> dt.datetime:
    """``--at`` (naive: in the business hours' time zone), or now."""
    zone = rules.business_hours.zone if rules.business_hours is not None else ZoneInfo("Asia/Shanghai")
    if at is None:
        return dt.datetime.fromtimestamp(time.time(), zone)
    try:
        moment = dt.datetime.fromisoformat(at.strip())
    except ValueError:
        raise click.BadParameter(f"{at!r} is not a time like 2026-11-28 10:00", param_hint="--at") from None
    return moment.replace(tzinfo=zone) if moment.tzinfo is None else moment.astimezone(zone)


def _parsed(xml: str) -> Any:
    try:
        return parse_push(xml)
    except BadPush as exc:
        raise click.UsageError(f"the push cannot be parsed: {exc.reason}") from exc


def _dispatch(rules: RuleSet, moment: dt.datetime, message: Any) -> Match:
    """Route ``message`` through the rules alone, their hand-offs judged as at ``moment``."""
    router = MessageRouter("kf rules")
    router.replace(rules.handlers(Handoff(rules, clock=moment.timestamp).respond))
    return router.dispatch_with_handler(message)


def _rule_of(rules: RuleSet, match: Match) -> Optional[Rule]:
    """The rule that answered: each rule's handler carries the rule's name, unique in the set."""
    if match.handler is None:
        return None
    return {rule.name: rule for rule in rules.active}.get(match.handler.name)


def _explain(rules: RuleSet, rule: Rule, moment: dt.datetime) -> None:
    click.echo(f"rule {rule.name!r} takes it ({rule.origin or rules.source})")
    click.echo(f"  because: {rule.filter!r}")
    click.echo(f"  action:  {rule.action}")
    hours = rules.business_hours
    if hours is not None and isinstance(rule.action, Transfer):
        state = "open" if hours.is_open(moment) else "closed"
        click.echo(f"  hours:   {state} at {moment:%Y-%m-%d %H:%M %Z}" + ("" if state == "open" else
                                                                          ": the closed text answers"))


# -- push ----------------------------------------------------------------------------------

@click.command()
@click.argument("url")
@_message_options
@click.option("--token", envvar="KF_TOKEN", help="The push Token [env KF_TOKEN; as flask kf: the app's].")
@click.option("--aes-key", envvar="KF_ENCODING_AES_KEY",
              help="EncodingAESKey: encrypt the push [env KF_ENCODING_AES_KEY].")
@click.option("--appid", envvar="KF_APPID", help="AppID, needed with --aes-key [env KF_APPID].")
@click.option("--deliveries", default=1, show_default=True, type=click.IntRange(1, 10),
              help="Send the same push this many times, as WeChat does when it gets no answer.")
@click.option("--timeout", default=10.0, show_default=True, type=float, help="Seconds to wait for each answer.")
def push(url: str, text: Optional[str], event: Optional[str], key: Optional[str], xml_file: Any, sender: str,
         token: Optional[str], aes_key: Optional[str], appid: Optional[str], deliveries: int, timeout: float) -> None:
    """Sign (and encrypt) a push as WeChat does, send it to URL and print the reply, decrypted.

    As ``flask kf push`` the app's KF_TOKEN, KF_ENCODING_AES_KEY and KF_APPID come before the environment.
    """
    token = _app_first("token", "KF_TOKEN", token)
    aes_key = _app_first("aes_key", "KF_ENCODING_AES_KEY", aes_key)
    appid = _app_first("appid", "KF_APPID", appid)
    if not token:
        raise click.UsageError("Missing option '--token' (or KF_TOKEN in the environment or the app's config)")
    xml = _build_xml(text, event, key, xml_file, sender)
    signer = _signer(token, aes_key, appid)
    query, body = signer.sign(xml)
    refused = False
    for delivery in range(1, deliveries + 1):
        prefix = f"[delivery {delivery}] " if deliveries > 1 else ""
        refused = not _deliver(url, signer, (query, body), prefix, timeout) or refused
    if refused:
        raise click.exceptions.Exit(1)


def _app_first(param: str, setting: str, value: Optional[str]) -> Optional[str]:
    """An option's value: typed on the command line, else the app's (as ``flask kf``), else the environment's."""
    app = flask_app()
    if app is None or click.get_current_context().get_parameter_source(param) == ParameterSource.COMMANDLINE:
        return value
    return app.config.get(setting) or value


def _signer(token: str, aes_key: Optional[str], appid: Optional[str]) -> PushSigner:
    from ..testing import PushSigner
    try:
        return PushSigner(token, aes_key, appid)
    except KfError as exc:
        raise click.UsageError(str(exc)) from exc


def _deliver(url: str, signer: PushSigner, signed: Tuple[Dict[str, str], bytes], prefix: str, timeout: float) -> bool:
    """POST the signed push once and print the answer, opened; whether the webhook took it (a 2xx or 3xx)."""
    import requests

    query, body = signed
    try:
        response = requests.post(url, params=query, data=body, timeout=timeout, headers={"Content-Type": "text/xml"})
    except requests.RequestException as exc:
        raise click.ClickException(f"cannot reach {url}: {exc}") from exc
    click.echo(f"{prefix}HTTP {response.status_code}")
    try:
        click.echo(signer.open_reply(response.text) if response.ok else response.text)
    except KfError as exc:
        raise click.ClickException(str(exc)) from exc
    return bool(response.ok)
