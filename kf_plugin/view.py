"""The Flask side: the views WeChat's requests reach (the Official Account's pushes, 微信客服's callbacks), the
operator's views an app opts into (``KF_METRICS``, ``KF_STATUS_URL``), and what each app keeps for them."""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Dict, Mapping, Optional, Protocol
from urllib.parse import parse_qsl

from flask import Flask, Request, Response, current_app, request

from .errors import ConfigError
from .metrics import OFFICIAL_ACCOUNT, WECOM, scrape
from .readings import read, refresh_gauges
from .scheduling import Jobs
from .services import Services
from .status import authorized, challenge, check_status_settings, status_page
from .swapping import SwapGate
from .webhook import Webhook, WebhookResponse

if TYPE_CHECKING:
    from .wecom.channel import WeComChannel

__all__ = ["EXTENSION", "AppState", "refuse_taken_url", "register_views", "webhook_view", "wecom_view",
           "metrics_view", "status_view"]

log = logging.getLogger(__name__)

#: What answers one request: ``handle(method, query, read_body)`` (a webhook's or a callback's).
Handle = Callable[[str, Mapping[str, str], Callable[[int], bytes]], WebhookResponse]
#: The key of a plugin's state in ``app.extensions``.
EXTENSION = "kf_plugin"


class Plugin(Protocol):
    """What the views need of the :class:`~kf_plugin.extension.KfPlugin` that registered them."""

    jobs: Jobs
    gate: SwapGate


@dataclass(frozen=True)
class AppState:
    """What ``app.extensions["kf_plugin"]`` holds: the plugin, the app's webhook and services."""

    plugin: "Plugin"
    webhook: Optional[Webhook]
    services: Services
    wecom: Optional["WeComChannel"] = None


def refuse_taken_url(app: Flask, url: str, setting: str = "KF_URL") -> None:
    """Flask sends a request to the first view registered for a path: one already on ``url`` would take
    WeChat's pushes (or its URL check) and the plugin's webhook would never run."""
    for rule in app.url_map.iter_rules():
        if rule.rule == url and rule.methods and rule.methods & {"GET", "POST"}:
            raise ConfigError(f"{setting} {url!r} is already served by the view {rule.endpoint!r}, which would "
                              f"answer WeChat instead of kf_plugin's webhook: set {setting} to a free path, or "
                              "remove that view (to keep your own view, call kf.handle(message) from it instead)")


def register_views(app: Flask, state: AppState) -> None:
    """Register the webhook of the Official Account (``KF_URL``) and the 微信客服 callback (``KF_WECOM_URL``)
    that ``state`` has, and the metrics (``KF_METRICS``) and status page (``KF_STATUS_URL``) when asked for.

    :raises ConfigError: another view already serves one of their paths; the status page has no credential.
    """
    settings = state.services.settings
    if state.webhook is not None:
        refuse_taken_url(app, settings.url, "KF_URL")
        app.add_url_rule(settings.url, endpoint="kf_plugin_webhook", view_func=webhook_view, methods=["GET", "POST"])
    if state.wecom is not None:
        refuse_taken_url(app, settings.wecom_url, "KF_WECOM_URL")
        app.add_url_rule(settings.wecom_url, endpoint="kf_plugin_wecom", view_func=wecom_view,
                         methods=["GET", "POST"])
    if settings.metrics is not None and settings.metrics != "registry":
        refuse_taken_url(app, settings.metrics, "KF_METRICS")
        app.add_url_rule(settings.metrics, endpoint="kf_plugin_metrics", view_func=metrics_view, methods=["GET"])
    if settings.status_url is not None:
        check_status_settings(settings)
        refuse_taken_url(app, settings.status_url, "KF_STATUS_URL")
        app.add_url_rule(settings.status_url, endpoint="kf_plugin_status", view_func=status_view, methods=["GET"])


def webhook_view() -> Response:
    """WeChat's pushes to the Official Account (registered only when the app has its webhook)."""
    state: AppState = current_app.extensions[EXTENSION]
    assert state.webhook is not None
    return _answer(state.webhook.handle, state, OFFICIAL_ACCOUNT)


def wecom_view() -> Response:
    """WeCom's 微信客服 callbacks (registered only when the app serves 微信客服)."""
    state: AppState = current_app.extensions[EXTENSION]
    assert state.wecom is not None
    return _answer(state.wecom.callback.handle, state, WECOM)


def query_of(environ: Mapping[str, Any]) -> Dict[str, str]:
    """The request's query as a plain dict, decoded as werkzeug decodes ``request.args`` and the first of a
    repeated name winning (as ``request.args.get`` answers). The pipeline reads a few names several times: a
    dict answers them without a MultiDict's cost, and WeChat's queries (ASCII, nothing escaped) without even
    ``parse_qsl``'s: split as it splits, they read the same."""
    raw = environ.get("QUERY_STRING", "")
    if raw.isascii() and "%" not in raw and "+" not in raw:
        pairs = (item.partition("=") for item in raw.split("&") if item)
        return dict(reversed([(name, value) for name, _, value in pairs]))
    raw = raw.encode("latin-1").decode("utf-8", "replace")   # WSGI's str → UTF-8
    return dict(reversed(parse_qsl(raw, keep_blank_values=True)))


def metrics_view() -> Response:
    """The metrics in Prometheus's text format (every worker's, in prometheus_client's multiprocess mode)."""
    state: AppState = current_app.extensions[EXTENSION]
    try:
        refresh_gauges(state.services)
    except Exception:  # the counters are still worth a scrape when a reading fails (Redis away, say)
        log.exception("could not read the queue, token and Redis gauges before a scrape")
    body, content_type = scrape()
    return Response(body, content_type=content_type)


def status_view() -> Response:
    """The status page, for a request with its credential; 401 otherwise."""
    state: AppState = current_app.extensions[EXTENSION]
    settings = state.services.settings
    if not authorized(request.headers.get("Authorization"), settings):
        return challenge(settings)
    return status_page(read(state.services), settings.appid or settings.wecom_corpid or "kf_plugin")


def _answer(handle: Handle, state: AppState, channel: str) -> Response:
    # Once, not through the proxy at every use. Flask types ``request`` as the Request it stands for, so the
    # proxy's own method is unknown to a type checker.
    incoming: Request = request._get_current_object()  # type: ignore[attr-defined]
    if incoming.method == "HEAD":
        # Flask serves HEAD wherever GET is served; a HEAD can neither verify the URL (its answer has no body)
        # nor carry a push, so it is answered as a route without HEAD would be.
        return Response("method not allowed: use GET (URL verification) or POST (a push)", status=405,
                        headers={"Allow": "GET, POST"}, content_type="text/plain; charset=utf-8")
    state.plugin.jobs.ensure_started()
    started = time.perf_counter()
    with state.plugin.gate.reading():   # a swap of the rules waits for the push, never lands inside it
        answer = handle(incoming.method, query_of(incoming.environ), incoming.stream.read)
    state.services.metrics.push(channel, answer.status, time.perf_counter() - started)
    return Response(answer.body, status=answer.status, content_type=answer.content_type)
