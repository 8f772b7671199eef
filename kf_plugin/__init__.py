"""kf_plugin: hand WeChat official-account conversations to customer service.

Rules (keywords, regex, menu clicks, QR scans, follows, ...) decide which
conversations go to a human; :class:`KfPlugin` wires them into a Flask bot,
:class:`KfAdmin` drives the customer-service API.
"""
from .admin import KfAdmin
from .client import KfClient
from .errors import (
    AgentOfflineError,
    BadPush,
    ConfigError,
    InvalidTokenError,
    KfAccountError,
    KfError,
    OutsideWindowError,
    QuotaExceededError,
    RateLimitedError,
    RuleFileError,
    RuleProblem,
    SessionError,
    WeChatAPIError,
    WeChatNetworkError,
)
from .extension import KfPlugin
from .filters import (
    ALL,
    EVENT,
    NOTHING,
    TEXT,
    Channel,
    Event,
    EventKey,
    EventKeyRegex,
    Filter,
    Keyword,
    MsgType,
    Regex,
    Requirements,
    Users,
)
from .folding import Folding
from .hours import BusinessHours
from .loader import load_rules, load_rules_text
from .queueing import ContextTemplate, QueuePolicy
from .replies import TransferReply, render_reply
from .router import Handler, MessageRouter
from .rules import Reply, Rule, RuleSet, Transfer
from .window import Quota, WindowStatus, WindowTracker

__version__ = "0.1.0"

__all__ = [
    "KfPlugin", "MessageRouter", "Handler", "Rule", "RuleSet", "Transfer", "Reply", "QueuePolicy", "ContextTemplate",
    "load_rules", "load_rules_text", "TransferReply", "render_reply", "BusinessHours",
    "KfAdmin", "KfClient", "WindowTracker", "WindowStatus", "Quota",
    "Filter", "ALL", "NOTHING", "TEXT", "EVENT", "Keyword", "Regex", "Event", "EventKey", "EventKeyRegex", "MsgType",
    "Users", "Channel", "Requirements", "Folding",
    "KfError", "ConfigError", "RuleFileError", "RuleProblem", "BadPush", "WeChatAPIError", "WeChatNetworkError",
    "InvalidTokenError", "RateLimitedError", "OutsideWindowError", "QuotaExceededError", "AgentOfflineError",
    "KfAccountError", "SessionError",
]
