"""The Flask side of the webhook: the view WeChat's requests reach, and what each app keeps for it."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from flask import Flask, Request, Response, current_app, request

from .errors import ConfigError
from .services import Services
from .webhook import Webhook

if TYPE_CHECKING:
    from .extension import KfPlugin

__all__ = ["EXTENSION", "AppState", "refuse_taken_url", "webhook_view"]

#: The key of a plugin's state in ``app.extensions``.
EXTENSION = "kf_plugin"


@dataclass(frozen=True)
class AppState:
    """What ``app.extensions["kf_plugin"]`` holds: the plugin, the app's webhook and services."""

    plugin: "KfPlugin"
    webhook: Webhook
    services: Services


def refuse_taken_url(app: Flask, url: str) -> None:
    """Flask sends a request to the first view registered for a path: one already on ``url`` would take
    WeChat's pushes (or its URL check) and the plugin's webhook would never run."""
    for rule in app.url_map.iter_rules():
        if rule.rule == url and rule.methods and rule.methods & {"GET", "POST"}:
            raise ConfigError(f"KF_URL {url!r} is already served by the view {rule.endpoint!r}, which would "
                              "answer WeChat instead of kf_plugin's webhook: set KF_URL to a free path, or remove "
                              "that view (to keep your own view, call kf.handle(message) from it instead)")


def webhook_view() -> Response:
    # Once, not through the proxy at every use. Flask types ``request`` as the Request it stands for, so the
    # proxy's own method is unknown to a type checker.
    incoming: Request = request._get_current_object()  # type: ignore[attr-defined]
    if incoming.method == "HEAD":
        # Flask serves HEAD wherever GET is served; a HEAD can neither verify the URL (its answer has no body)
        # nor carry a push, so it is answered as a route without HEAD would be.
        return Response("method not allowed: use GET (URL verification) or POST (a push)", status=405,
                        headers={"Allow": "GET, POST"}, content_type="text/plain; charset=utf-8")
    state: AppState = current_app.extensions[EXTENSION]
    state.plugin.jobs.ensure_started()
    answer = state.webhook.handle(incoming.method, incoming.args, incoming.stream.read)
    return Response(answer.body, status=answer.status, content_type=answer.content_type)
