"""Prometheus metrics of the plugin, through one sink the rest of the code calls.

With ``KF_METRICS`` (or ``KF_STATUS_URL``) set, :func:`open_metrics` gives a :class:`PrometheusMetrics` on
prometheus_client's default registry; otherwise the :data:`NO_METRICS` sink, whose methods do nothing (and
prometheus_client is never imported). A metric that fails is logged, never raised: a push does not fail for
a metric.

Under gunicorn with several workers, prometheus_client's multiprocess mode sums the workers: set
``PROMETHEUS_MULTIPROC_DIR`` before the workers start, empty that directory at each start, and let gunicorn's
``child_exit`` hook be :func:`child_exit` (docs/operations.md shows the configuration). No label holds an openid
or any other value without bound: rules come from the rule file, endpoints from :data:`ENDPOINTS` (anything else
is ``other``), errcodes from the errcode tables (anything else is ``other``).
"""
from __future__ import annotations

import functools
import logging
import os
import threading
from typing import Any, Dict, FrozenSet, Iterator, Optional, Set, Tuple

from .lifecycle import Stage, Transition

__all__ = ["Metrics", "NO_METRICS", "PrometheusMetrics", "open_metrics", "ENDPOINTS", "OFFICIAL_ACCOUNT", "WECOM",
           "endpoint_of", "errcode_label", "scrape", "samples", "child_exit", "multiprocess_dir"]

log = logging.getLogger(__name__)

#: The channels: the Official Account's webhook and API, and 微信客服 (WeCom).
OFFICIAL_ACCOUNT, WECOM = "official_account", "wecom"
#: The API paths counted under their own name; any other path is counted as ``other``.
ENDPOINTS = frozenset({
    "/cgi-bin/token", "/cgi-bin/stable_token", "/cgi-bin/gettoken",
    "/cgi-bin/customservice/getkflist", "/cgi-bin/customservice/getonlinekflist",
    "/cgi-bin/message/custom/send", "/cgi-bin/message/custom/typing",
    "/customservice/kfaccount/add", "/customservice/kfaccount/update", "/customservice/kfaccount/del",
    "/customservice/kfaccount/uploadheadimg", "/customservice/kfaccount/inviteworker",
    "/customservice/kfsession/create", "/customservice/kfsession/close", "/customservice/kfsession/getsession",
    "/customservice/kfsession/getsessionlist", "/customservice/kfsession/getwaitcase",
    "/customservice/msgrecord/getmsglist",
    "/cgi-bin/kf/account/add", "/cgi-bin/kf/account/del", "/cgi-bin/kf/account/list", "/cgi-bin/kf/account/update",
    "/cgi-bin/kf/add_contact_way", "/cgi-bin/kf/customer/batchget", "/cgi-bin/kf/get_corp_statistic",
    "/cgi-bin/kf/get_servicer_statistic", "/cgi-bin/kf/send_msg", "/cgi-bin/kf/send_msg_on_event",
    "/cgi-bin/kf/service_state/get", "/cgi-bin/kf/service_state/trans", "/cgi-bin/kf/servicer/add",
    "/cgi-bin/kf/servicer/del", "/cgi-bin/kf/servicer/list", "/cgi-bin/kf/sync_msg",
})
#: Seconds of a push's handling (WeChat gives up after 5 s) and of a user's wait for an agent.
PUSH_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 4.5, 10.0)
WAIT_BUCKETS = (5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0)


def endpoint_of(path: str) -> str:
    """The ``endpoint`` label of an API path: the path when it is one of :data:`ENDPOINTS`, else ``other``."""
    return path if path in ENDPOINTS else "other"


def errcode_label(errcode: object) -> str:
    """The ``errcode`` label: a known errcode (0 for success), ``network``/``http`` as given, else ``other``."""
    if errcode in ("network", "http"):
        return str(errcode)
    return str(errcode) if errcode in _known_errcodes() else "other"


@functools.lru_cache(maxsize=None)
def _known_errcodes() -> FrozenSet[int]:
    # Imported here: the API clients import this module, and the 微信客服 package imports them.
    from .errors import ERROR_MEANINGS
    from .wecom.errors import WECOM_ERROR_MEANINGS
    return frozenset(ERROR_MEANINGS) | frozenset(WECOM_ERROR_MEANINGS) | {0, -1}


class Metrics:
    """The sink the plugin reports to; this one does nothing (metrics off). See :class:`PrometheusMetrics`."""

    enabled = False

    def push(self, channel: str, status: int, seconds: float) -> None:
        """A push (or callback) of ``channel`` was answered with HTTP ``status`` after ``seconds``."""

    def rule_matched(self, rule: str) -> None:
        """The rule named ``rule`` answered a message."""

    def transition(self, transition: Transition) -> None:
        """A user moved through the hand-off lifecycle (a request, an accept, an ending)."""

    def api_call(self, channel: str, path: str, errcode: object) -> None:
        """One HTTP call to ``path``: its errcode (0: success), or ``network``/``http`` when none came."""

    def token_renewed(self, channel: str, expires_in: float) -> None:
        """``channel``'s access token was renewed; it lives ``expires_in`` seconds."""

    def token_expires_in(self, channel: str, seconds: float) -> None:
        """``channel``'s access token, as read now, lives ``seconds`` more."""

    def queue_length(self, users: int) -> None:
        """``users`` wait for a human now."""

    def agents_online(self, agents: int) -> None:
        """``agents`` agents are online (status 1) by the last refresh."""

    def redis_fallback(self, active: bool) -> None:
        """This process runs on its own memory because Redis fails (``active``), or no longer does."""

    def late_reply(self) -> None:
        """The handlers outlasted the reply budget: their reply goes as a customer-service message."""

    def window_refusal(self, errcode: int) -> None:
        """A send was refused before calling WeChat, which would have answered ``errcode`` (45015 or 45047)."""


#: The sink while metrics are off.
NO_METRICS = Metrics()


class PrometheusMetrics(Metrics):
    """The metrics in ``registry`` (prometheus_client's default registry unless given); see the module docstring
    and docs/operations.md for the list.

    :raises ValueError: (from prometheus_client) ``registry`` already holds metrics of these names.
    """

    enabled = True

    def __init__(self, registry: Any = None):
        from prometheus_client import REGISTRY, Counter, Gauge, Histogram
        on = REGISTRY if registry is None else registry
        self._pushes = Counter("kf_pushes", "Pushes (and 微信客服 callbacks) answered, by channel and HTTP status.",
                               ["channel", "status"], registry=on)
        self._push_seconds = Histogram("kf_push_seconds", "Seconds from a push's arrival to its answer.",
                                       ["channel"], buckets=PUSH_BUCKETS, registry=on)
        self._rules = Counter("kf_rule_matches", "Messages a rule answered, by rule.", ["rule"], registry=on)
        self._requested = Counter("kf_handoffs_requested", "Hand-offs requested, by rule.", ["rule"], registry=on)
        self._ended = Counter("kf_handoffs_ended", "Hand-offs ended, by rule and outcome.", ["rule", "outcome"],
                              registry=on)
        self._wait = Histogram("kf_handoff_wait_seconds", "Seconds from a hand-off's request to its acceptance.",
                               buckets=WAIT_BUCKETS, registry=on)
        self._api = Counter("kf_api_calls", "HTTP calls to the WeChat and WeCom APIs, by endpoint and errcode.",
                            ["channel", "endpoint", "errcode"], registry=on)
        self._renewals = Counter("kf_access_token_renewals", "Access tokens fetched.", ["channel"], registry=on)
        self._expires = Gauge("kf_access_token_expires_in_seconds", "Seconds the access token has left, as last read.",
                              ["channel"], multiprocess_mode="livemostrecent", registry=on)
        self._queue = Gauge("kf_queue_length", "Users waiting for a human, as last read.",
                            multiprocess_mode="livemostrecent", registry=on)
        self._agents = Gauge("kf_agents_online", "Agents online, by the last refresh.",
                             multiprocess_mode="livemostrecent", registry=on)
        self._fallback = Gauge("kf_redis_fallback_active", "1 while a worker runs on its own memory because Redis "
                               "fails.", multiprocess_mode="livemax", registry=on)
        self._late = Counter("kf_late_replies", "Replies that outlasted the reply budget and went as "
                             "customer-service messages.", registry=on)
        self._refusals = Counter("kf_window_refusals", "Sends refused before calling WeChat, by the errcode avoided.",
                                 ["errcode"], registry=on)
        self._failed: Set[str] = set()
        self._children: Dict[Tuple[int, Tuple[str, ...]], Any] = {}

    def _labelled(self, metric: Any, *values: str) -> Any:
        """``metric.labels(*values)``, kept: prometheus_client takes a lock and builds the key at every call, and
        the label values are few (see the module docstring)."""
        key = (id(metric), values)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*values)
        return child

    def _broken(self, what: str, exc: Exception) -> None:
        """A metric failed: said in full once per kind, then only at DEBUG (the push goes on either way)."""
        if what in self._failed:
            log.debug("the %s metric failed again: %r", what, exc)
            return
        self._failed.add(what)
        log.error("the %s metric failed; the plugin goes on without it", what, exc_info=exc)

    def push(self, channel: str, status: int, seconds: float) -> None:
        try:
            self._labelled(self._pushes, channel, str(status)).inc()
            self._labelled(self._push_seconds, channel).observe(seconds)
        except Exception as exc:  # a metric never fails a push
            self._broken("push", exc)

    def rule_matched(self, rule: str) -> None:
        try:
            self._labelled(self._rules, rule).inc()
        except Exception as exc:  # a metric never fails a push
            self._broken("rule", exc)

    def transition(self, transition: Transition) -> None:
        try:
            record, kind = transition.record, transition.change.kind
            if record is None:
                return
            if kind == "request":
                self._labelled(self._requested, record.reason).inc()
            elif kind in ("accept", "switch") and transition.before.stage is Stage.QUEUED and record.waited is not None:
                self._wait.observe(max(0.0, record.waited))
            if record.outcome is not None and transition.after.stage is Stage.BOT:
                self._labelled(self._ended, record.reason, record.outcome.value).inc()
        except Exception as exc:  # a metric never fails a push
            self._broken("hand-off", exc)

    def api_call(self, channel: str, path: str, errcode: object) -> None:
        try:
            self._labelled(self._api, channel, endpoint_of(path), errcode_label(errcode)).inc()
        except Exception as exc:  # a metric never fails a call
            self._broken("API call", exc)

    def token_renewed(self, channel: str, expires_in: float) -> None:
        try:
            self._labelled(self._renewals, channel).inc()
            self._labelled(self._expires, channel).set(expires_in)
        except Exception as exc:  # a metric never fails a renewal
            self._broken("token", exc)

    def token_expires_in(self, channel: str, seconds: float) -> None:
        try:
            self._labelled(self._expires, channel).set(seconds)
        except Exception as exc:  # a metric never fails a reading
            self._broken("token", exc)

    def queue_length(self, users: int) -> None:
        try:
            self._queue.set(users)
        except Exception as exc:  # a metric never fails a reading
            self._broken("queue", exc)

    def agents_online(self, agents: int) -> None:
        try:
            self._agents.set(agents)
        except Exception as exc:  # a metric never fails a refresh
            self._broken("agents", exc)

    def redis_fallback(self, active: bool) -> None:
        try:
            self._fallback.set(1 if active else 0)
        except Exception as exc:  # a metric never fails a failover
            self._broken("Redis fallback", exc)

    def late_reply(self) -> None:
        try:
            self._late.inc()
        except Exception as exc:  # a metric never fails a push
            self._broken("late reply", exc)

    def window_refusal(self, errcode: int) -> None:
        try:
            self._labelled(self._refusals, str(errcode)).inc()
        except Exception as exc:  # a metric never fails a send
            self._broken("window", exc)


_shared: Optional[PrometheusMetrics] = None
_shared_lock = threading.Lock()


def open_metrics(enabled: bool) -> Metrics:
    """The process's metrics sink: :data:`NO_METRICS` unless ``enabled``; else one :class:`PrometheusMetrics` on
    the default registry, the same for every app of the process (their figures add up).

    :raises ConfigError: prometheus_client is not installed.
    """
    global _shared
    if not enabled:
        return NO_METRICS
    with _shared_lock:
        if _shared is None:
            try:
                _shared = PrometheusMetrics()
            except ImportError:
                from .errors import ConfigError
                raise ConfigError("KF_METRICS or KF_STATUS_URL is set but prometheus_client is not installed: "
                                  "pip install prometheus_client") from None
        return _shared


def multiprocess_dir() -> Optional[str]:
    """The directory of prometheus_client's multiprocess mode, when it is on in this process."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or os.environ.get("prometheus_multiproc_dir") or None


def _registry() -> Any:
    """What a scrape reads: every worker's files in multiprocess mode (a registry of its own, as
    prometheus_client's docs require), else the default registry."""
    from prometheus_client import REGISTRY, CollectorRegistry
    if multiprocess_dir() is None:
        return REGISTRY
    from prometheus_client import multiprocess
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    return registry


def scrape() -> Tuple[bytes, str]:
    """The text exposition of the metrics (every worker's in multiprocess mode) and its content type."""
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
    return generate_latest(_registry()), CONTENT_TYPE_LATEST


def samples(*names: str) -> Dict[str, Dict[Tuple[Tuple[str, str], ...], float]]:
    """The current values of the samples ``names`` (e.g. ``kf_rule_matches_total``), each by its labels."""
    found: Dict[str, Dict[Tuple[Tuple[str, str], ...], float]] = {name: {} for name in names}
    for sample in _each_sample():
        if sample.name in found:
            found[sample.name][tuple(sorted(sample.labels.items()))] = sample.value
    return found


def _each_sample() -> Iterator[Any]:
    for family in _registry().collect():
        yield from family.samples


def child_exit(server: Any, worker: Any) -> None:
    """gunicorn's ``child_exit`` hook: a worker that ended leaves the live gauges (``from kf_plugin.metrics import
    child_exit`` in the gunicorn configuration file)."""
    if multiprocess_dir() is None:
        return
    from prometheus_client import multiprocess
    multiprocess.mark_process_dead(worker.pid)
