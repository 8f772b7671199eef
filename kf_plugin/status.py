"""The status page (``KF_STATUS_URL``): one server-rendered HTML page for an operator, behind a credential.

It shows the rules and their hits, the agents, the wait queue, the last hand-offs, hand-offs per hour (an inline
SVG chart), the access token's time left, Redis's health and the sends the 48-hour window refused. It needs no
script nor anything from another host, and never shows a token, a secret or a whole openid.

The credential is ``KF_STATUS_TOKEN`` (``Authorization: Bearer …``) or ``KF_STATUS_USER`` and
``KF_STATUS_PASSWORD`` (basic auth), compared in constant time; without it the page answers 401 and nothing else.
"""
from __future__ import annotations

import base64
import binascii
import functools
import hmac
import time
from importlib import resources
from typing import List, Optional

from flask import Response, render_template_string
from markupsafe import Markup

from .config import Settings
from .errors import ConfigError
from .readings import Readings

__all__ = ["check_status_settings", "authorized", "challenge", "status_page", "hour_chart", "duration"]

REALM = "kf_plugin status"
#: The page loads nothing: no script, no style sheet or font from elsewhere; its chart is inline SVG.
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
                               "frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}


def check_status_settings(settings: Settings) -> None:
    """:raises ConfigError: ``KF_STATUS_URL`` is set without a credential (or with half of the basic-auth pair)."""
    if settings.status_url is None:
        return
    if bool(settings.status_user) != bool(settings.status_password):
        raise ConfigError("KF_STATUS_USER and KF_STATUS_PASSWORD go together: set both, or neither")
    if not settings.status_token and not settings.status_user:
        raise ConfigError(f"KF_STATUS_URL {settings.status_url!r} needs a credential: set KF_STATUS_TOKEN (a bearer "
                          "token), or KF_STATUS_USER and KF_STATUS_PASSWORD (basic auth)")


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


def authorized(header: Optional[str], settings: Settings) -> bool:
    """Whether the ``Authorization`` header carries the status page's credential (compared in constant time)."""
    scheme, _, value = (header or "").strip().partition(" ")
    value = value.strip()
    if scheme.lower() == "bearer" and settings.status_token:
        return _same(value, settings.status_token)
    if scheme.lower() == "basic" and settings.status_user and settings.status_password:
        try:
            user, sep, password = base64.b64decode(value, validate=True).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        # Both compared whatever the first gives, so the time taken tells nothing of which was wrong.
        user_ok, password_ok = _same(user, settings.status_user), _same(password, settings.status_password)
        return bool(sep) and user_ok and password_ok
    return False


def challenge(settings: Settings) -> Response:
    """The 401 for a request without the credential: the schemes it may use, and no word of the page."""
    response = Response("authentication required\n", status=401, content_type="text/plain; charset=utf-8",
                        headers={"Cache-Control": "no-store"})
    if settings.status_token:
        response.headers.add("WWW-Authenticate", f'Bearer realm="{REALM}"')
    if settings.status_user:
        response.headers.add("WWW-Authenticate", f'Basic realm="{REALM}", charset="UTF-8"')
    return response


@functools.lru_cache(maxsize=1)
def _template() -> str:
    return resources.files("kf_plugin").joinpath("templates/status.html").read_text(encoding="utf-8")


def status_page(readings: Readings, account: str) -> Response:
    """The page for ``readings`` (see :func:`~kf_plugin.readings.read`) of the account ``account``."""
    html = render_template_string(_template(), readings=readings, account=account, chart=hour_chart(readings.per_hour),
                                  duration=duration, when=_when)
    return Response(html, content_type="text/html; charset=utf-8", headers=PAGE_HEADERS)


def hour_chart(counts: List[int], width: int = 480, height: int = 120) -> Markup:
    """A bar chart of ``counts`` (oldest first, one bar an hour) as inline SVG, with its axis labels."""
    top = max(counts, default=0) or 1
    left, top_margin = 24, 14
    plot_h = height - top_margin - 16   # 16: the axis labels' line under the bars
    step = (width - left) / max(1, len(counts))
    bars = []
    for index, count in enumerate(counts):
        bar_h = plot_h * count / top
        x, y = left + index * step + 1, top_margin + plot_h - bar_h
        bars.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{max(1.0, step - 2):.1f}" height="{bar_h:.1f}">'
                    f'<title>{len(counts) - index} h ago: {count}</title></rect>')
    labels = (f'<text x="0" y="22">{top if any(counts) else 0}</text><text x="0" y="{top_margin + plot_h}">0</text>'
              f'<text x="{left}" y="{height - 2}">−{len(counts)} h</text>'
              f'<text x="{width}" y="{height - 2}" text-anchor="end">now</text>')
    base = top_margin + plot_h
    axis = f'<line x1="{left}" y1="{base}" x2="{width}" y2="{base}" stroke="#dde3e8"/>'
    return Markup(f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" '
                  f'aria-label="hand-offs per hour, last {len(counts)} hours">{axis}{"".join(bars)}{labels}</svg>')


def duration(seconds: Optional[float]) -> str:
    """``seconds`` as the page shows a duration: ``45 s``, ``12 min 5 s``, ``1 h 58 min``."""
    if seconds is None:
        return "—"
    whole = int(max(0.0, seconds))
    if whole < 60:
        return f"{whole} s"
    if whole < 3600:
        return f"{whole // 60} min {whole % 60} s"
    return f"{whole // 3600} h {whole % 3600 // 60} min"


def _when(moment: float, pattern: str) -> str:
    return time.strftime(pattern, time.localtime(moment))

