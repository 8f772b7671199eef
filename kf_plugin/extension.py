"""The Flask extension: ``KfPlugin(app)`` or ``KfPlugin()`` + ``init_app(app)``."""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Optional, Union

from flask import Flask, Response, current_app, request
from wechatpy.replies import BaseReply

from .config import SETTINGS, read_setting
from .dedupe import Deduplicator
from .errors import ConfigError, KfError
from .loader import load_rules
from .replies import to_reply
from .router import MessageRouter
from .rules import Rule, RuleSet
from .security import PushCipher
from .state import MemoryReplayStore, ReplayStore
from .webhook import Webhook

__all__ = ["KfPlugin"]

EXTENSION = "kf_plugin"
RulesLike = Union[RuleSet, str, "os.PathLike[str]", Iterable[Rule]]


@dataclass(frozen=True)
class _AppState:
    plugin: "KfPlugin"
    webhook: Webhook


class KfPlugin:
    """Customer-service hand-off for a wechatpy + Flask bot.

    ``rules``: a :class:`RuleSet`, rules, or the path of a YAML rule file
    (otherwise ``KF_RULES`` is read at :meth:`init_app`). ``router``: the bot's
    own :class:`MessageRouter`; the kf rules are tried before its handlers.
    ``replay_store``: where replies to retried pushes are kept (default: memory).
    ``clock``: the time source for timestamp checks, replaceable in tests.

    Three ways in: let :meth:`init_app` own the webhook endpoint; call
    :meth:`register` to put the rules on your router; or call :meth:`handle`
    from your own view.
    """

    def __init__(self, app: Optional[Flask] = None, *, rules: Optional[RulesLike] = None,
                 router: Optional[MessageRouter] = None, replay_store: Optional[ReplayStore] = None,
                 clock: Callable[[], float] = time.time):
        self.rules_router = MessageRouter("kf rules")
        self.router = router if router is not None else MessageRouter("bot")
        self.router.include(self.rules_router, first=True)
        self._rules = RuleSet()
        self._rules_path: Optional[str] = None
        self._replay_store = replay_store
        self._clock = clock
        if rules is not None:
            self.load_rules(rules)
        if app is not None:
            self.init_app(app)

    # -- rules --------------------------------------------------------------

    @property
    def rules(self) -> RuleSet:
        """The rules in force."""
        return self._rules

    def load_rules(self, rules: RulesLike) -> RuleSet:
        """Validate ``rules`` completely, then put them in force in one swap.

        :raises RuleFileError: the file is invalid; the rules in force stay.
        :raises ValueError: rules built in Python share a name.
        """
        path = None
        if isinstance(rules, RuleSet):
            ruleset = rules
        elif isinstance(rules, (str, os.PathLike)):
            path = os.fspath(rules)
            ruleset = load_rules(path)
        else:
            ruleset = RuleSet.of(rules)
        self.rules_router.replace(ruleset.handlers())
        self._rules = ruleset
        if path is not None:
            self._rules_path = path
        return ruleset

    def reload_rules(self) -> RuleSet:
        """Read the rule file again; on any error the current rules stay in force.

        :raises KfError: the rules were not loaded from a file.
        :raises RuleFileError: the file is now invalid (nothing changed).
        """
        if self._rules_path is None:
            raise KfError("there is no rule file to reload: the rules were not loaded from a file")
        return self.load_rules(self._rules_path)

    # -- the three integration styles -----------------------------------------

    def handle(self, message: Any) -> Optional[BaseReply]:
        """Route a parsed wechatpy message; the reply to send, or ``None``."""
        return to_reply(self.router.dispatch(message), message)

    def register(self, router: MessageRouter) -> None:
        """Put the kf rules in front of the handlers of a bot's own ``router``."""
        router.include(self.rules_router, first=True)

    def init_app(self, app: Flask) -> None:
        """Register the webhook on ``app`` and the ``flask kf`` commands.

        Reads (defaults in brackets): ``KF_TOKEN`` (required), ``KF_APPID``,
        ``KF_SECRET``, ``KF_ENCODING_AES_KEY`` (set → safe mode),
        ``KF_ENCODING_AES_KEY_PREVIOUS``, ``KF_RULES``, ``KF_URL`` [/wechat],
        ``KF_MAX_CLOCK_SKEW`` [300], ``KF_MAX_BODY`` [65536],
        ``KF_DEDUPE_TTL`` [60], ``KF_DEDUPE_WAIT`` [4].

        :raises RuntimeError: a KfPlugin is already registered on ``app``.
        :raises ConfigError: a setting is missing or invalid.
        :raises RuleFileError: ``KF_RULES`` names an invalid file.
        """
        if EXTENSION in app.extensions:
            raise RuntimeError(f"a KfPlugin is already registered on the app {app.name!r}; "
                               "call init_app once per app (one KfPlugin serves one official account)")
        for name, setting in SETTINGS.items():
            app.config.setdefault(name, setting.default)
        config = {name: read_setting(app.config, name) for name in SETTINGS}
        token = config["KF_TOKEN"]
        if not token:
            raise ConfigError("KF_TOKEN is not set: set it to the Token from the WeChat console "
                              "(Settings and Development → Basic Configuration)")
        cipher = None
        if config["KF_ENCODING_AES_KEY"]:
            previous = [config["KF_ENCODING_AES_KEY_PREVIOUS"]] if config["KF_ENCODING_AES_KEY_PREVIOUS"] else []
            cipher = PushCipher(token, config["KF_ENCODING_AES_KEY"], config["KF_APPID"], previous)
        if config["KF_RULES"] and self._rules_path is None and not self._rules.rules:
            self.load_rules(config["KF_RULES"])
        store = self._replay_store if self._replay_store is not None else MemoryReplayStore()
        dedupe = Deduplicator(store,
                              ttl=config["KF_DEDUPE_TTL"], wait=config["KF_DEDUPE_WAIT"])
        webhook = Webhook(token, self.handle, dedupe, cipher=cipher, max_clock_skew=config["KF_MAX_CLOCK_SKEW"],
                          max_body=config["KF_MAX_BODY"], clock=self._clock)
        app.extensions[EXTENSION] = _AppState(self, webhook)
        app.add_url_rule(config["KF_URL"], endpoint="kf_plugin_webhook", view_func=_webhook_view,
                         methods=["GET", "POST"])
        from .cli import cli
        app.cli.add_command(cli, "kf")


def _webhook_view() -> Response:
    webhook: Webhook = current_app.extensions[EXTENSION].webhook
    # Read at most one byte past the limit, whatever Content-Length claims.
    body = request.stream.read(webhook.max_body + 1) if request.method == "POST" else b""
    answer = webhook.handle(request.method, request.args, body)
    return Response(answer.body, status=answer.status, content_type=answer.content_type)
