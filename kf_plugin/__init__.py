"""kf_plugin: hand WeChat official-account conversations to customer service.

Rules (keywords, regex, menu clicks, QR scans, follows, ...) decide which
conversations go to a human; :class:`KfPlugin` wires them into a Flask bot.
"""
from .errors import BadPush, ConfigError, KfError, RuleFileError, RuleProblem
from .extension import KfPlugin
from .filters import ALL, EVENT, TEXT, Event, EventKey, EventKeyRegex, Filter, Keyword, MsgType, Regex, Users
from .loader import load_rules, load_rules_text
from .replies import TransferReply, render_reply
from .router import Handler, MessageRouter
from .rules import Reply, Rule, RuleSet, Transfer

__version__ = "0.1.0"

__all__ = [
    "KfPlugin", "MessageRouter", "Handler", "Rule", "RuleSet", "Transfer", "Reply",
    "load_rules", "load_rules_text", "TransferReply", "render_reply",
    "Filter", "ALL", "TEXT", "EVENT", "Keyword", "Regex", "Event", "EventKey", "EventKeyRegex", "MsgType", "Users",
    "KfError", "ConfigError", "RuleFileError", "RuleProblem", "BadPush",
]
