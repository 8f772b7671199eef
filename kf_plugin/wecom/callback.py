"""The WeCom callback endpoint (微信客服's ``kf_msg_or_event``), one named step each, independent of the framework.

    GET:  check the query → verify msg_signature over echostr → check timestamp → decrypt echostr → answer it
    POST: check the query → check timestamp → read body → check size → verify msg_signature over <Encrypt>
          → decrypt → parse the event → on_event(open_kfid, token) → answer an empty 200

WeCom signs the *encrypted body* (``msg_signature`` covers ``<Encrypt>``; there is no separate signature of the
query as the Official Account sends), so for a POST the query's form and the timestamp window are what is checked
before the body is read, and the signature is verified before anything is decrypted or the event parsed. Every
bad input ends in :class:`~kf_plugin.errors.BadPush` with the status to answer — 403 signature or timestamp (or
an event addressed to another corp), 413 too large, 400 anything else — and a reason, never a 500.

What WeCom expects back: for the URL check (GET) the decrypted ``echostr`` as the whole body, without quotes,
BOM or newline; for an event (POST) an HTTP 200 within 5 seconds, with an empty body ("以空串为返回包": WeCom's
receive-message page), or it retries the callback. The event carries no message: the bot pulls them with
``sync_msg``, which is why ``on_event`` must return at once (``Puller.notify`` does). Retries of one callback
need no dedupe here: a second notify for an open_kfid whose pull is running only makes that pull go on.
Callbacks other than ``kf_msg_or_event`` (the same URL may receive other WeCom events) are acknowledged and
ignored, with a log line.
"""
from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, Mapping, Optional

from ..errors import BadPush
from ..webhook import TEXT, WebhookResponse, check_timestamp, read_limited, read_xml
from .crypto import WeComCipher

__all__ = ["WeComCallback", "KfEvent", "parse_event", "KF_EVENT"]

log = logging.getLogger(__name__)

KF_EVENT = "kf_msg_or_event"
_NONCE = re.compile(r"[\x21-\x7e]{1,128}")
_SIGNATURE = re.compile(r"[0-9a-fA-F]{40}")
# The sync token is an opaque printable string (WeCom's example is 47 characters); the bound only keeps a
# forged value from being carried into API calls and logs.
_TOKEN = re.compile(r"[\x21-\x7e]{1,256}")
# open_kfid is "wk" followed by letters and digits; it becomes part of a lease and a cursor key.
_OPEN_KFID = re.compile(r"[A-Za-z0-9_\-]{1,64}")
# A base64 echostr of a few hundred characters; a longer one is not WeCom's.
MAX_ECHOSTR = 1024


@dataclass(frozen=True)
class KfEvent:
    """A ``kf_msg_or_event`` callback: which kf account has news, and the token that lets ``sync_msg`` fetch it
    without the strict rate limit (valid 10 minutes)."""

    open_kfid: str
    token: str
    corpid: str


def parse_event(xml: str, corpid: str) -> Optional[KfEvent]:
    """The ``kf_msg_or_event`` in a decrypted callback, or ``None`` for any other (well-formed) WeCom callback.

    :raises BadPush: (400) not well-formed XML, or a ``kf_msg_or_event`` whose ``<Token>`` or ``<OpenKfId>`` is
        missing or malformed; (403) addressed (``<ToUserName>``) to another corp than ``corpid``.
    """
    fields = read_xml(xml, "not a WeCom callback")
    if not isinstance(fields, dict):
        raise BadPush(400, "not a WeCom callback: <xml> has no fields")
    to = fields.get("ToUserName")
    if to is not None and to != corpid:
        raise BadPush(403, "the callback is addressed to another corp than the configured corpid")
    if not (_text(fields, "MsgType") == "event" and _text(fields, "Event") == KF_EVENT):
        log.info("ignored a WeCom callback that is not %s (MsgType %r, Event %r)", KF_EVENT,
                 _text(fields, "MsgType")[:32], _text(fields, "Event")[:64])
        return None
    token, open_kfid = _text(fields, "Token"), _text(fields, "OpenKfId")
    if not _TOKEN.fullmatch(token):
        raise BadPush(400, f"{KF_EVENT}: <Token> is missing or not 1–256 printable ASCII characters")
    if not _OPEN_KFID.fullmatch(open_kfid):
        raise BadPush(400, f"{KF_EVENT}: <OpenKfId> is missing or not 1–64 letters, digits, '_' or '-'")
    return KfEvent(open_kfid, token, corpid)


def _text(fields: Dict[str, Any], name: str) -> str:
    value = fields.get(name)
    return value if isinstance(value, str) else ""


class WeComCallback:
    """Answers WeCom's GET (URL verification) and POST (event) requests for one corp's callback URL.

    ``on_event(open_kfid, token)`` is called for each ``kf_msg_or_event`` and must return at once (the answer is
    due within 5 s); its own exception propagates (the framework answers 500 and WeCom retries the callback).
    ``max_clock_skew`` (seconds, 0 = off) bounds how far a request's timestamp may be from ``clock()``;
    ``max_body`` bounds the body in bytes.
    """

    def __init__(self, cipher: WeComCipher, on_event: Callable[[str, str], None], *, max_clock_skew: int = 300,
                 max_body: int = 64 * 1024, clock: Callable[[], float] = time.time):
        self.cipher = cipher
        self.on_event = on_event
        self.max_clock_skew = max_clock_skew
        self.max_body = max_body
        self.clock = clock

    def handle(self, method: str, args: Mapping[str, str], read_body: Callable[[int], bytes]) -> WebhookResponse:
        """Answer one request. ``read_body(limit)`` returns at most ``limit`` bytes of the body; it is called only
        for a POST whose query and timestamp pass, and whatever it raises is a 400."""
        try:
            self.check_query(args)
            if method == "GET":
                return self.answer_verification(args)
            self.check_timestamp(args)
            body = read_limited(read_body, self.max_body)
            self.check_size(body)
            encrypted = self.envelope(body)
            self.cipher.verify(args.get("timestamp", ""), args["nonce"], encrypted, args["msg_signature"])
            event = parse_event(self.cipher.decrypt(encrypted), self.cipher.corpid)
            if event is not None:
                self.on_event(event.open_kfid, event.token)
            return WebhookResponse(200, "")
        except BadPush as exc:
            log.warning("refused a WeCom callback %s request: %s", method, exc)
            return WebhookResponse(exc.status, exc.reason)

    def check_query(self, args: Mapping[str, str]) -> None:
        """:raises BadPush: (403) ``msg_signature`` missing or not 40 hex digits; (400) a bad nonce."""
        if not args.get("msg_signature"):
            raise BadPush(403, "msg_signature is missing")
        if not _SIGNATURE.fullmatch(args["msg_signature"]):
            raise BadPush(403, "msg_signature is not 40 hexadecimal digits")
        if not _NONCE.fullmatch(args.get("nonce", "")):
            raise BadPush(400, "nonce must be 1–128 printable ASCII characters")

    def check_timestamp(self, args: Mapping[str, str]) -> None:
        """:raises BadPush: (403) the timestamp is not a unix time, or too far from now."""
        check_timestamp(args, self.max_clock_skew, self.clock)

    def answer_verification(self, args: Mapping[str, str]) -> WebhookResponse:
        """The URL check: ``msg_signature`` signs ``echostr``, whose plaintext is the answer."""
        echo = args.get("echostr", "")
        if not echo:
            raise BadPush(400, "echostr is missing")
        if len(echo) > MAX_ECHOSTR:
            raise BadPush(400, f"echostr is longer than {MAX_ECHOSTR} characters")
        self.cipher.verify(args.get("timestamp", ""), args["nonce"], echo, args["msg_signature"])
        self.check_timestamp(args)
        return WebhookResponse(200, self.cipher.decrypt(echo), TEXT)

    def check_size(self, body: bytes) -> None:
        """:raises BadPush: (413) larger than ``max_body``; (400) empty."""
        if len(body) > self.max_body:
            raise BadPush(413, f"body is larger than {self.max_body} bytes")
        if not body.strip():
            raise BadPush(400, "body is empty")

    def envelope(self, body: bytes) -> str:
        """The ``<Encrypt>`` text of the body's envelope.

        :raises BadPush: (400) not UTF-8, not XML, or no ``<Encrypt>`` text.
        """
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise BadPush(400, f"body is not UTF-8 ({exc.reason} at byte {exc.start})") from None
        fields = read_xml(text, "not an encrypted WeCom callback")
        encrypted = fields.get("Encrypt") if isinstance(fields, dict) else None
        if not isinstance(encrypted, str) or not encrypted:
            raise BadPush(400, "not an encrypted WeCom callback: <Encrypt> is missing, empty or not text")
        return encrypted
