"""A small but real bot: greeting and help handlers of its own, plus kf rules.

``create_app()`` reads ``KF_*`` from the environment; with no ``KF_TOKEN`` set
it runs on built-in demo credentials (safe mode), which need no WeChat account:
the Official Account's webhook at ``KF_URL`` and, unless a ``KF_WECOM_*`` key is set, a
demo corp's 微信客服 callback at ``KF_WECOM_URL`` (its API calls go to
``KF_WECOM_API_BASE_URL``: the sandbox in the demo), with the status page at ``/status`` (user ``demo``)
and the metrics at ``/metrics``.
With the WeChat API (``KF_APPID`` and ``KF_SECRET``) it also tells queued users
their place and sends a satisfaction survey when an agent closes a session.
"""
from __future__ import annotations

import dataclasses
import functools
import logging
import os
import time
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Mapping, Optional

from flask import Flask

from kf_plugin import EVENT, Event, Keyword, KfError, KfPlugin, MessageRouter, RuleSet, load_rules
from kf_plugin.config import WECOM_KEYS, settings_from_env
from kf_plugin.lifecycle import Transition

RULES = Path(__file__).with_name("rules.yaml")
DEMO_SETTINGS = {
    "KF_TOKEN": "kf-demo-token",
    "KF_APPID": "wx00000000demo0000",
    "KF_ENCODING_AES_KEY": "kfDemoEncodingAesKey0123456789abcdefghijklm",
}
DEMO_WECOM_SETTINGS = {   # 微信客服, with the demo credentials
    "KF_WECOM_CORPID": "wwdemo0000000000",
    "KF_WECOM_SECRET": "kf-demo-wecom-secret",
    "KF_WECOM_TOKEN": "kf-demo-wecom-token",
    "KF_WECOM_AES_KEY": "kfDemoWeComAesKey0123456789abcdefghijklmnop",
}

DEMO_OPERATOR_SETTINGS = {   # the operator's view, with demo credentials (each unless given)
    "KF_METRICS": "true",
    "KF_STATUS_URL": "/status",
    "KF_STATUS_USER": "demo",
    "KF_STATUS_PASSWORD": "kf-demo-status",
}

GREETING = "你好！我是示例机器人。回复“帮助”查看我能做什么，回复“转人工”联系客服。"
HELP = "可以试试：\n· 转人工 —— 联系客服\n· 营业时间 —— 客服工作时间\n· 菜单“联系 VIP 客服” —— 专属客服"
WELCOME = "感谢关注！回复“帮助”查看功能。"
SURVEY = "本次人工服务您满意吗？请点选："
SURVEY_CHOICES = (("satisfied", "满意"), ("unsatisfied", "不满意"))
THANKS = "感谢您的评价！"
WECOM_CUSTOMER_PREFIX = "wm"   # how WeCom's external_userid of a WeChat user begins (an openid begins with "o")

log = logging.getLogger(__name__)


def build_router(stats: Counter) -> MessageRouter:
    """The bot's own handlers; the kf rules are put in front of them."""
    router = MessageRouter("example bot")

    @router.on(Keyword("你好", "hello", "hi", match="exact"))
    def greet(message: Any) -> str:
        stats["greet"] += 1
        return GREETING

    @router.on(Keyword("帮助", "help", "?", "？", match="exact"))
    def help_(message: Any) -> str:
        stats["help"] += 1
        return HELP

    @router.on(Keyword(*(choice for _, choice in SURVEY_CHOICES), match="exact"))
    def rated(message: Any) -> str:   # a click in the survey comes back as a text message
        stats["rated"] += 1
        return THANKS

    @router.on(Event("subscribe"))
    def welcome(message: Any) -> str:
        stats["welcome"] += 1
        return WELCOME

    @router.on(~EVENT)
    def fallback(message: Any) -> Optional[str]:
        stats["fallback"] += 1
        return "收到。回复“帮助”查看我能做什么。" if message.type == "text" else None

    return router


def create_app(config: Optional[Mapping[str, Any]] = None, *, clock: Callable[[], float] = time.time) -> Flask:
    """The example bot; ``config`` overrides the environment; ``clock``: the time source (the demo's)."""
    app = Flask(__name__)
    settings = settings_from_env()
    given = {**settings, **(config or {})}
    if "KF_TOKEN" not in given:
        settings.update(DEMO_SETTINGS)
        app.config["KF_DEMO"] = True
        if not any(key in given for key in WECOM_KEYS):   # never half demo, half someone's own corp
            settings.update(DEMO_WECOM_SETTINGS)
        settings.update({key: value for key, value in DEMO_OPERATOR_SETTINGS.items() if key not in given})
    app.config.update(settings)
    app.config.setdefault("KF_RULES", os.fspath(RULES))
    app.config.update(config or {})
    stats: Counter = Counter()
    app.extensions["example_bot_stats"] = stats
    kf = KfPlugin(router=build_router(stats), rules=_own_rules(app.config), clock=clock)
    kf.init_app(app)
    if app.config.get("KF_APPID") and app.config.get("KF_SECRET"):
        kf.on_handoff("close")(functools.partial(survey, kf))

    @app.get("/")
    def index() -> str:
        wecom = f" and 微信客服 at {app.config['KF_WECOM_URL']}" if app.extensions["kf_plugin"].wecom else ""
        return f"kf_plugin example bot: point WeChat at {app.config['KF_URL']}{wecom}\n"

    return app


def _own_rules(config: Mapping[str, Any]) -> Optional[RuleSet]:
    """The example's own rule file; without API credentials its session hand-off is switched off (kf_plugin
    refuses a rule that needs the API it does not have). Another file (``KF_RULES``) is left to the plugin."""
    if os.fspath(config["KF_RULES"]) != os.fspath(RULES):
        return None
    rules = load_rules(RULES)
    if config.get("KF_APPID") and config.get("KF_SECRET"):
        return rules
    needing = {rule.name for rule, _ in rules.needing_api()}
    return dataclasses.replace(rules, rules=tuple(dataclasses.replace(rule, enabled=False) if rule.name in needing
                                                  else rule for rule in rules.rules))


def survey(kf: KfPlugin, transition: Transition) -> None:
    """The hook run when an agent closes a session: ask how it went (a menu message; a click on a choice
    comes back as a text message with the choice's text). Official Account users only: after a 微信客服 session
    ends, WeCom takes a message only with the end event's own code (``send_msg_on_event``)."""
    if transition.after.openid.startswith(WECOM_CUSTOMER_PREFIX):
        return
    try:
        kf.admin.send_msgmenu(transition.after.openid, SURVEY, SURVEY_CHOICES)
    except KfError as exc:   # outside the 48-hour window, say: a missed survey is not worth an alarm
        log.warning("could not send the survey to %s: %s", transition.after.openid, exc)
