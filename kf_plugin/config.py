"""The ``KF_*`` settings: names, defaults, types, and reading them from the environment."""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any, Callable, Dict, Mapping, Optional

from .errors import ConfigError

__all__ = ["Setting", "SETTINGS", "Settings", "settings_from_env", "read_setting", "checked_settings",
           "settings_markdown"]


@dataclass(frozen=True)
class Setting:
    name: str
    default: Any
    convert: Callable[[str], Any]
    help: str


def _text(value: str) -> str:
    return value


def _number(kind: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def convert(value: Any) -> Any:
        try:
            number = kind(value)
        except (TypeError, ValueError):
            raise ValueError(f"must be a number, not {value!r}") from None
        if number < 0:
            raise ValueError(f"must not be negative (got {number})")
        return number
    return convert


def _choice(*options: str) -> Callable[[Any], str]:
    def convert(value: Any) -> str:
        if value not in options:
            raise ValueError(f"must be {' or '.join(options)}, not {value!r}")
        return value
    return convert


def _account_id(value: Any) -> str:
    if not isinstance(value, str) or not re.fullmatch(r"[A-Za-z0-9_\-]{1,64}", value):
        raise ValueError(f"must be the account's original ID as WeChat sends it in ToUserName "
                         f"(gh_ and 12 characters), not {value!r}")
    return value


def _metrics(value: Any) -> Optional[str]:
    """``KF_METRICS``: off → ``None``; on → the path of the endpoint; ``registry`` → metrics without one."""
    if isinstance(value, bool):
        return "/metrics" if value else None
    text = str(value).strip()
    if text.lower() in ("0", "false", "off", "no"):
        return None
    if text.lower() in ("1", "true", "on", "yes"):
        return "/metrics"
    if text == "registry" or (text.startswith("/") and len(text) > 1):
        return text
    raise ValueError(f"must be true (metrics at /metrics), a URL path such as /internal/metrics, registry (no "
                     f"endpoint: the bot's own exporter serves them) or false, not {value!r}")


def _path(value: Any) -> str:
    if not isinstance(value, str) or not value.startswith("/") or len(value) < 2:
        raise ValueError(f"must be a URL path such as /kf/status, not {value!r}")
    return value


_seconds = _number(float)
_count = _number(int)


SETTINGS: Dict[str, Setting] = {s.name: s for s in (
    Setting("KF_TOKEN", None, _text, "Token from the WeChat console; signs every push."),
    Setting("KF_APPID", None, _text, "AppID of the official account; required in safe mode."),
    Setting("KF_SECRET", None, _text, "AppSecret, for calls to the WeChat API."),
    Setting("KF_ENCODING_AES_KEY", None, _text,
            "EncodingAESKey (43 characters); set → safe mode: encrypted pushes are decrypted and replies encrypted."),
    Setting("KF_ENCODING_AES_KEY_PREVIOUS", None, _text,
            "The EncodingAESKey before the last change; still accepted for decryption while the new one propagates."),
    Setting("KF_ACCOUNT_ID", None, _account_id,
            "Original ID of the official account (gh_…, the ToUserName of its pushes); set → a push addressed "
            "to another account is refused with 403."),
    Setting("KF_RULES", None, _text, "Path of the YAML rule file."),
    Setting("KF_RULES_WATCH", 2.0, _seconds,
            "Seconds between each process's background checks of the rule file (its modification time, size and "
            "content hash), of SIGHUP and of `kf-plugin reload` requests in Redis; a changed, valid file is put "
            "in force, a bad one is reported and the rules in force stay; 0 turns the checks off."),
    Setting("KF_WECOM_CORPID", None, _text,
            "WeCom corp ID (企业ID); set with the other KF_WECOM_* keys → 微信客服 is served too, "
            "from the same rules."),
    Setting("KF_WECOM_SECRET", None, _text,
            "Secret of the self-built WeCom app with 微信客服 API permission (new corps cannot use the 微信客服 "
            "system secret)."),
    Setting("KF_WECOM_TOKEN", None, _text, "Token of the 微信客服 callback URL (signs WeCom's callbacks)."),
    Setting("KF_WECOM_AES_KEY", None, _text, "EncodingAESKey of the 微信客服 callback URL (43 characters)."),
    Setting("KF_WECOM_URL", "/wecom/kf", _text, "URL path of the 微信客服 callback that init_app registers."),
    Setting("KF_WECOM_API_BASE_URL", "https://qyapi.weixin.qq.com", _text,
            "Base URL of the WeCom API, for every call including the token (an API proxy, or the sandbox)."),
    Setting("KF_URL", "/wechat", _text, "URL path of the webhook that init_app registers."),
    Setting("KF_MAX_CLOCK_SKEW", 300, _count,
            "Seconds a push's timestamp may differ from the server clock; 0 turns the check off."),
    Setting("KF_MAX_BODY", 64 * 1024, _count, "Largest accepted push body in bytes; larger → 413."),
    Setting("KF_DEDUPE_TTL", 60.0, _seconds,
            "Seconds a reply is kept to answer WeChat's retries of the same push (at least KF_MAX_CLOCK_SKEW)."),
    Setting("KF_DEDUPE_WAIT", 4.0, _seconds,
            "Seconds a retry waits for a first delivery that is still being handled."),
    Setting("KF_API_BASE_URL", "https://api.weixin.qq.com", _text,
            "Base URL of the WeChat API, for every call including the token (an API proxy, or the sandbox)."),
    Setting("KF_API_TIMEOUT", 5.0, _seconds, "Seconds before any WeChat API call times out."),
    Setting("KF_REPLY_BUDGET", 4.5, _seconds,
            "Seconds the handlers get before the push is answered 'success' and their reply is sent as a "
            "customer-service message instead (needs KF_APPID and KF_SECRET); 0 turns this off."),
    Setting("KF_HANDOFF_BUDGET", 0.3, _seconds,
            "Seconds a push may wait on the WeChat API for a hand-off (online agents, opening a session)."),
    Setting("KF_ESCALATE_BUDGET", 1.0, _seconds,
            "Seconds an `@kf.escalate_when` predicate (a classifier, a model) may take before the bot's handlers "
            "answer without it; it is asked within `KF_REPLY_BUDGET`, so keep it well below."),
    Setting("KF_HANDOFF_RECORDS_FOR", 30 * 86400, _seconds,
            "Seconds the record of a hand-off (who asked, why, which agent took it, how long the user waited, how "
            "it ended) is kept after the request, for `kf-plugin handoffs`; 2592000 is 30 days."),
    Setting("KF_HANDOFF_SWEEP", 30.0, _seconds,
            "Seconds between background sweeps of the hand-offs: users queued longer than the rule file's queue "
            "timeout go back to the bot, and sessions whose `kf_*` event the bot missed are read from WeChat "
            "(`kfsession/getsession`, at most 50 users a sweep); 0 turns the sweep off, and the queue timeout "
            "with it."),
    Setting("KF_QUEUE_REFRESH", 10.0, _seconds,
            "Seconds between background reads of WeChat's wait queue (`kfsession/getwaitcase`), which give a "
            "queued user's place for the queue notice (a read older than three times this is not used); 0 turns "
            "them off, and the queue's `notice_fallback` is sent instead."),
    Setting("KF_AGENTS_REFRESH", 20.0, _seconds, "Seconds between background refreshes of the online agents."),
    Setting("KF_WORKER_THREADS", 8, _count,
            "Threads for handlers under the reply budget, and as many again for background sends."),
    Setting("KF_REDIS_URL", None, _text,
            "Redis URL (redis://host:6379/0); set → the access token, duplicate pushes and the 48-hour window are "
            "shared by every worker; unset → kept in each process's memory."),
    Setting("KF_REDIS_PREFIX", "kf:", _text, "Prefix of kf_plugin's Redis keys (followed by the AppID)."),
    Setting("KF_TOKEN_MODE", "stable", _choice("stable", "classic"),
            "stable (/cgi-bin/stable_token, default) or classic (/cgi-bin/token)."),
    Setting("KF_TOKEN_MARGIN", 600.0, _seconds,
            "Renew the access token when fewer seconds than this remain (stable mode: at most 270)."),
    Setting("KF_TOKEN_INTERVAL", 60.0, _seconds, "Seconds between the token job's checks."),
    Setting("KF_TOKEN_SESSION_PREFIX", "wechatpy", _text,
            "Key prefix of the token in Redis, as wechatpy's RedisStorage(prefix=...) expects it."),
    Setting("KF_MEMORY_USERS", 20_000, _count,
            "Users whose 48-hour window each process remembers in its own memory (without KF_REDIS_URL, or while "
            "Redis is away); the least recently active are forgotten first, and WeChat then decides on sends."),
    Setting("KF_MEMORY_REPLIES", 20_000, _count,
            "Replies each process keeps in its own memory for WeChat's retries (with KF_REDIS_URL too: it is asked "
            "first); the oldest go first: keep it above the pushes a process takes in KF_DEDUPE_TTL."),
    Setting("KF_METRICS", None, _metrics,
            "Prometheus metrics (docs/operations.md): true → served at /metrics; a URL path → served there; "
            "`registry` → recorded in prometheus_client's default registry for the bot's own exporter; unset or "
            "false → off, at no cost."),
    Setting("KF_STATUS_URL", None, _path,
            "URL path of the status page (docs/operations.md); unset → no page. It needs KF_STATUS_TOKEN or "
            "KF_STATUS_USER and KF_STATUS_PASSWORD."),
    Setting("KF_STATUS_TOKEN", None, _text,
            "Bearer token that opens the status page (`Authorization: Bearer …`)."),
    Setting("KF_STATUS_USER", None, _text, "User name that opens the status page by HTTP basic auth."),
    Setting("KF_STATUS_PASSWORD", None, _text, "Password of KF_STATUS_USER."),
)}


def read_setting(config: Mapping[str, Any], name: str) -> Any:
    """``config[name]`` converted to the setting's type, or its default.

    :raises ConfigError: the value is not of the setting's kind (a number, one of its choices).
    """
    setting = SETTINGS[name]
    value = config.get(name)
    if value is None or value == "":
        return setting.default
    try:
        return setting.convert(value)
    except ValueError as exc:
        raise ConfigError(f"{name} {exc}") from None


def checked_settings(settings: Mapping[str, Any]) -> Dict[str, Any]:
    """The ``KF_*`` settings given, without those set to ``None``, after checking each.

    :raises ConfigError: an unknown key, or a value of the wrong kind.
    """
    unknown = sorted(set(settings) - set(SETTINGS))
    if unknown:
        raise ConfigError(f"no such setting: {', '.join(unknown)} (the settings are the KF_* keys listed in "
                          "docs/configuration.md)")
    given = {name: value for name, value in settings.items() if value is not None}
    for name in given:
        read_setting(given, name)
    return given


def settings_from_env(environ: Optional[Mapping[str, str]] = None) -> Dict[str, Any]:
    """The ``KF_*`` settings present in the environment, converted (for the CLI and the example app)."""
    environ = os.environ if environ is None else environ
    return {name: read_setting(environ, name) for name in SETTINGS if environ.get(name)}


@dataclass(frozen=True)
class Settings:
    """Every ``KF_*`` setting, converted and checked once: ``KF_DEDUPE_TTL`` is :attr:`dedupe_ttl`.

    Build it with :meth:`read`; the :data:`SETTINGS` table stays the one source of names, defaults and kinds
    (a test holds the fields to it).
    """

    token: Optional[str]
    appid: Optional[str]
    secret: Optional[str]
    encoding_aes_key: Optional[str]
    encoding_aes_key_previous: Optional[str]
    account_id: Optional[str]
    rules: Optional[str]
    rules_watch: float
    wecom_corpid: Optional[str]
    wecom_secret: Optional[str]
    wecom_token: Optional[str]
    wecom_aes_key: Optional[str]
    wecom_url: str
    wecom_api_base_url: str
    url: str
    max_clock_skew: int
    max_body: int
    dedupe_ttl: float
    dedupe_wait: float
    api_base_url: str
    api_timeout: float
    reply_budget: float
    handoff_budget: float
    escalate_budget: float
    handoff_records_for: float
    handoff_sweep: float
    queue_refresh: float
    agents_refresh: float
    worker_threads: int
    redis_url: Optional[str]
    redis_prefix: str
    token_mode: str
    token_margin: float
    token_interval: float
    token_session_prefix: str
    memory_users: int
    memory_replies: int
    metrics: Optional[str]
    status_url: Optional[str]
    status_token: Optional[str]
    status_user: Optional[str]
    status_password: Optional[str]

    @classmethod
    def read(cls, config: Mapping[str, Any], defaults: Optional[Mapping[str, Any]] = None) -> "Settings":
        """The settings in ``config`` (an app's config, the environment), else in ``defaults``, else the table's.

        :raises ConfigError: a value is not of its setting's kind.
        """
        merged = {**(defaults or {}), **{name: value for name, value in config.items()
                                          if name in SETTINGS and value is not None and value != ""}}
        return cls(**{field_of(name): read_setting(merged, name) for name in SETTINGS})

    @property
    def has_wecom(self) -> bool:
        """Whether 微信客服 is configured (its corp ID, secret, callback token and AES key are all set).

        :raises ConfigError: some of them are set and others not (微信客服 would silently not be served).
        """
        given = {name: bool(getattr(self, field_of(name))) for name in WECOM_KEYS}
        if any(given.values()) and not all(given.values()):
            missing = [name for name, present in given.items() if not present]
            raise ConfigError(f"微信客服 needs {', '.join(WECOM_KEYS)}; {', '.join(missing)} "
                              f"{'is' if len(missing) == 1 else 'are'} not set")
        return all(given.values())

    @property
    def measures(self) -> bool:
        """Whether metrics are recorded: ``KF_METRICS`` is on, or the status page (which shows them) is."""
        return self.metrics is not None or self.status_url is not None

    @property
    def has_api(self) -> bool:
        """Whether the WeChat API can be called (``KF_APPID`` and ``KF_SECRET`` are set)."""
        return bool(self.appid and self.secret)


#: The settings 微信客服 needs, all of them.
WECOM_KEYS = ("KF_WECOM_CORPID", "KF_WECOM_SECRET", "KF_WECOM_TOKEN", "KF_WECOM_AES_KEY")


def field_of(name: str) -> str:
    """The :class:`Settings` field of the setting ``name``: ``KF_DEDUPE_TTL`` → ``dedupe_ttl``."""
    return name[len("KF_"):].lower()


def settings_markdown() -> str:
    """The table of docs/configuration.md: every setting, its default and meaning, in :data:`SETTINGS` order."""
    rows = ["| key | default | meaning |", "|---|---|---|"]
    rows += [f"| `{name}` | {_default_in_docs(setting)} | {setting.help} |" for name, setting in SETTINGS.items()]
    return "\n".join(rows) + "\n"


def _default_in_docs(setting: Setting) -> str:
    if setting.name == "KF_TOKEN":   # init_app refuses to start without it
        return "— (required)"
    if setting.default is None:
        return "—"
    return f"`{setting.default:g}`" if isinstance(setting.default, float) else f"`{setting.default}`"
