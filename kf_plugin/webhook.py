"""The push pipeline, one named step each, independent of the web framework.

    verify signature → check timestamp → read body → check size → open (decrypt)
      → parse → dedupe → route and render → seal (encrypt)

The body is read only after the signature and the timestamp pass: nobody without
the Token can make the server read (or fail reading) a body. Every bad input ends
in :class:`~kf_plugin.errors.BadPush` with the status to answer (403 signature,
timestamp or another account, 413 too large, 400 anything else) and a reason in
the push's terms, never a 500. A handler's own exception propagates (after the
dedupe claim is released).
"""
from __future__ import annotations

import concurrent.futures
import functools
import logging
import re
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, Mapping, Optional, Tuple
from xml.parsers.expat import ErrorString, ExpatError

from wechatpy.replies import BaseReply

from .dedupe import Deduplicator, Known, body_digest, push_key
from .errors import BadPush
from .frozen import quick_init
from .lifecycle import Conversation, Transition
from .pushxml import message_from_fields, parse_fields
from .replies import render_reply
from .security import PushCipher, sign, signature_matches
from .state.base import Grant

__all__ = ["Webhook", "WebhookResponse", "LateReplies", "Slow", "Planned", "parse_push", "read_limited",
           "check_timestamp"]

log = logging.getLogger(__name__)

XML = "application/xml; charset=utf-8"
TEXT = "text/plain; charset=utf-8"
_REQUIRED_FIELDS = ("ToUserName", "FromUserName", "CreateTime", "MsgType")
_UNIX_TIME = re.compile(r"[0-9]{1,12}")  # ASCII digits only: str.isdigit() also takes "¹²³"
# The nonce comes back in the encrypted reply: only characters that survive XML and signing.
_NONCE = re.compile(r"[\x21-\x7e]{1,128}")
# Fields handlers read as text or numbers; a nested or repeated element there would surprise them.
_TEXT_FIELDS = ("Content", "Event", "EventKey", "Recognition", "MediaId", "PicUrl", "KfAccount")
# Account ids (gh_…) and openids (28 characters); the openid becomes part of keys kept for 48 hours, so its
# length is bounded well above WeChat's while still refusing anything that could fill the store.
MAX_IDENTIFIER = 64
_IDENTIFIER = re.compile(rf"[A-Za-z0-9_\-]{{1,{MAX_IDENTIFIER}}}")
_IDENTIFIER_FIELDS = ("ToUserName", "FromUserName")
# Upper bounds, in characters, far above anything WeChat sends (its menu and QR-code API docs: a menu key is at
# most 128 bytes, a VIEW menu's URL, its EventKey, 1024, a QR scene 64); MsgId is a 64-bit number.
FIELD_LIMITS: Dict[str, int] = {"MsgType": 32, "Event": 64, "EventKey": 1024, "MediaId": 256, "PicUrl": 2048,
                                "KfAccount": 128, "Content": 16384, "Recognition": 16384, "MsgId": 20}
# Characters XML 1.0 forbids; a NUL here also means UTF-16 bytes that happened to decode as UTF-8.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


@quick_init
@dataclass(frozen=True)
class WebhookResponse:
    status: int
    body: str
    content_type: str = TEXT


@dataclass(frozen=True)
class LateReplies:
    """The deadline: handlers still running after ``budget`` seconds get the push answered with
    ``success``; their reply, when it comes, goes to ``deliver(message, reply)``. ``on_late()`` is told each time
    the budget runs out.

    WeChat gives up on an answer after 5 s, so the budget keeps a margin below that.
    """

    executor: concurrent.futures.Executor
    budget: float
    deliver: Callable[[Any, Optional[BaseReply]], None]
    on_late: Callable[[], None] = lambda: None


@quick_init
@dataclass(frozen=True)
class Slow:
    """What ``respond`` returns when the rest of the work may be slow (a bot's own handlers): ``run()``
    gives the reply, under the deadline when there is one. Fast work (the kf rules) answers directly,
    on the request thread, without handing the push to another thread.
    """

    run: Callable[[], Optional[BaseReply]]


@quick_init
@dataclass(frozen=True)
class Planned:
    """What ``plan(message)`` returns when a push's answer is known without doing anything that must happen
    once (a kf rule's transfer or text): ``reply`` (``None``: ``success``) is stored with the push's claim in
    one step, and ``then`` (e.g. a notice sent in the background) runs once, for the delivery that stored it.
    ``handoff``: the request that takes the sender from the bot to the queue, when ``reply`` hands off; it is
    stored with the claim. The plan holds for a sender with the bot: for one queued or with an agent,
    ``respond`` answers instead.
    """

    reply: Optional[BaseReply]
    then: Optional[Callable[[], object]] = None
    handoff: Optional[Transition] = None


def read_limited(read_body: Callable[[int], bytes], max_body: int) -> bytes:
    """The body, cut at one byte past ``max_body`` whatever Content-Length claims.

    Read until the stream ends: a short read may only mean that more is on its way, and a body that stops
    before its Content-Length is then reported as such, not as broken XML.

    :raises BadPush: (400) reading failed (a client that went away, a malformed chunked body).
    """
    limit = max_body + 1
    chunks: list[bytes] = []
    size = 0
    try:
        while size < limit:
            chunk = read_body(limit - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except Exception as exc:  # each server has its own: ClientDisconnected, NoMoreData, InvalidChunkSize, OSError…
        log.info("could not read a request's body: %r", exc)
        raise BadPush(400, "the body could not be read: the client closed the connection early "
                           "or sent a malformed chunked body") from None
    return b"".join(chunks)


def check_timestamp(args: Mapping[str, str], max_clock_skew: int, clock: Callable[[], float]) -> None:
    """:raises BadPush: (403) the query's timestamp is not a unix time, or further than ``max_clock_skew``
    seconds from ``clock()`` (0: no limit)."""
    if not max_clock_skew:
        return
    raw = args.get("timestamp", "")
    if not _UNIX_TIME.fullmatch(raw):
        raise BadPush(403, "timestamp is not a unix time")
    skew = abs(clock() - int(raw))
    if skew > max_clock_skew:
        raise BadPush(403, f"timestamp is {int(skew)} s away from now (allowed: {max_clock_skew} s)")


def parse_push(xml: str, account_id: Optional[str] = None) -> Any:
    """Parse a decrypted push into a wechatpy message (as ``wechatpy.parse_message`` would: see :mod:`.pushxml`).

    :raises BadPush: (400) not well-formed, entity declarations, or not a
        WeChat push (missing or malformed ToUserName, FromUserName, CreateTime,
        MsgType; a field holding elements or longer than ``FIELD_LIMITS``);
        (403) ``account_id`` is given and the push is addressed to another account.
    """
    fields = read_xml(xml, "not a WeChat push")
    if not isinstance(fields, dict):
        raise BadPush(400, "not a WeChat push: <xml> has no fields")
    check_fields(fields)
    if account_id and fields["ToUserName"] != account_id:
        raise BadPush(403, "the push is addressed to another official account than KF_ACCOUNT_ID")
    return message_from_fields(fields)


def read_xml(text: str, refusal: str) -> Any:
    """The fields of an ``<xml>`` document (as xmltodict reads them), or :class:`BadPush` (400) saying why not."""
    try:
        return parse_fields(text)
    except ExpatError as exc:
        raise BadPush(400, f"{refusal}: the XML is not well-formed ({ErrorString(exc.code)} "
                           f"at line {exc.lineno}, column {exc.offset + 1})") from None
    except ValueError:  # xmltodict: "entities are disabled"
        raise BadPush(400, f"{refusal}: DOCTYPE and entity declarations are not allowed") from None
    except KeyError:
        raise BadPush(400, f"{refusal}: the root element is not <xml>") from None
    except Exception:  # whatever else a parser raises, the push is at fault; its text means nothing to a sender
        raise BadPush(400, f"{refusal}: the XML cannot be read") from None


def check_fields(data: Dict[str, Any]) -> None:
    """:raises BadPush: (400) a field WeChat always sends is missing or malformed, or one is too long."""
    for name in _REQUIRED_FIELDS:
        if not isinstance(data.get(name), str) or not data[name]:
            raise BadPush(400, f"not a WeChat push: <{name}> is missing or not text")
    for name in _IDENTIFIER_FIELDS:
        if not _IDENTIFIER.fullmatch(data[name]):
            raise BadPush(400, f"not a WeChat push: <{name}> must be 1–{MAX_IDENTIFIER} letters, digits, "
                               "'_' or '-' (an openid or a gh_ account id)")
    if not _UNIX_TIME.fullmatch(data["CreateTime"]):
        raise BadPush(400, "not a WeChat push: <CreateTime> is not a unix time")
    for name in _TEXT_FIELDS:
        if name in data and data[name] is not None and not isinstance(data[name], str):
            raise BadPush(400, f"not a WeChat push: <{name}> is not text")
    is_event = data["MsgType"].lower() == "event" or data["MsgType"].lower().startswith("device_")
    if is_event and "Event" in data and data["Event"] is None:  # wechatpy reads the event's type from it
        raise BadPush(400, "not a WeChat push: <Event> is empty")
    if "MsgId" in data and not (isinstance(data["MsgId"], str) and data["MsgId"].isascii() and data["MsgId"].isdigit()):
        raise BadPush(400, "not a WeChat push: <MsgId> is not a number")
    for name, limit in FIELD_LIMITS.items():
        if isinstance(data.get(name), str) and len(data[name]) > limit:
            raise BadPush(400, f"not a WeChat push: <{name}> is longer than {limit} characters")


class Webhook:
    """Answers WeChat's GET (URL verification) and POST (push) requests.

    ``respond(message, conversation)`` returns the reply to send, ``None``
    ("success"), or :class:`Slow` work to finish; it runs once per push, under
    the push's claim, with the sender's hand-off
    :class:`~kf_plugin.lifecycle.Conversation` as the claim read it (``None``
    when the replay store keeps none). ``plan(message)``, asked first for every delivery, may instead
    answer with a :class:`Planned` reply, stored with the claim (no
    ``respond``). ``grant_for(message)``: the send rights a
    push gives its sender (``(openid, Grant)`` or ``None``), recorded once per
    push with its claim. ``max_clock_skew`` (seconds, 0 = off) bounds how far a
    push's timestamp may be from ``clock()``; ``max_body`` bounds the body in
    bytes. ``late`` puts :class:`Slow` work under the deadline
    (:class:`LateReplies`). ``account_id`` (the gh_ id), when given, refuses
    pushes addressed to any other account.
    """

    def __init__(self, token: str, respond: Callable[[Any, Optional[Conversation]], Any], dedupe: Deduplicator, *,
                 cipher: Optional[PushCipher] = None, max_clock_skew: int = 300, max_body: int = 64 * 1024,
                 late: Optional[LateReplies] = None, clock: Callable[[], float] = time.time,
                 grant_for: Optional[Callable[[Any], Optional[Tuple[str, Grant]]]] = None,
                 account_id: Optional[str] = None, plan: Optional[Callable[[Any], Optional[Planned]]] = None):
        self.token = token
        self.respond = respond
        self.plan = plan
        self.grant_for = grant_for
        self.dedupe = dedupe
        self.cipher = cipher
        self.max_clock_skew = max_clock_skew
        self.max_body = max_body
        self.late = late
        self.clock = clock
        self.account_id = account_id

    def handle(self, method: str, args: Mapping[str, str], read_body: Callable[[int], bytes]) -> WebhookResponse:
        """Answer one request. ``read_body(limit)`` returns at most ``limit`` bytes of the body; it is called
        only for a POST whose signature and timestamp pass, and whatever it raises (a client that went away,
        a malformed chunked body) is a 400."""
        try:
            self.verify_signature(args)
            self.check_timestamp(args)
            if method == "GET":
                return self.answer_verification(args)
            body = self.read(read_body)
            self.check_size(body)
            xml, key_index = self.open_body(args, body)
            message = parse_push(xml, self.account_id)
            reply = self.dedupe.run(push_key(message), functools.partial(self.route_and_render, message),
                                    grant=self.grant_for(message) if self.grant_for is not None else None,
                                    binding=self.binding_of(args, body), now=self.clock(),
                                    known=self.known_answer(message), openid=message.source)
            return self.seal(reply, args, key_index)
        except BadPush as exc:
            log.warning("refused a %s request: %s", method, exc)
            return WebhookResponse(exc.status, exc.reason)

    def read(self, read_body: Callable[[int], bytes]) -> bytes:
        """The body, cut at one byte past ``max_body`` (see :func:`read_limited`)."""
        return read_limited(read_body, self.max_body)

    def verify_signature(self, args: Mapping[str, str]) -> None:
        timestamp, nonce = args.get("timestamp", ""), args.get("nonce", "")
        if not args.get("signature"):
            raise BadPush(403, "signature is missing")
        if not signature_matches(sign(self.token, timestamp, nonce), args.get("signature")):
            raise BadPush(403, "signature does not match")
        if not _NONCE.fullmatch(nonce):
            raise BadPush(400, "nonce must be 1–128 printable ASCII characters")

    def check_timestamp(self, args: Mapping[str, str]) -> None:
        check_timestamp(args, self.max_clock_skew, self.clock)

    def answer_verification(self, args: Mapping[str, str]) -> WebhookResponse:
        echo = args.get("echostr")
        if not echo:
            raise BadPush(400, "echostr is missing")
        return WebhookResponse(200, echo)

    def check_size(self, body: bytes) -> None:
        if len(body) > self.max_body:
            raise BadPush(413, f"body is larger than {self.max_body} bytes")
        if not body.strip():
            raise BadPush(400, "body is empty")

    def open_body(self, args: Mapping[str, str], body: bytes) -> Tuple[str, int]:
        """The push's plain XML, and the index of the AES key that opened it (0 for plain pushes)."""
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise BadPush(400, f"body is not UTF-8 ({exc.reason} at byte {exc.start})") from None
        bad = _NOT_XML.search(text)
        if bad:
            raise BadPush(400, f"body holds a character XML does not allow (U+{ord(bad.group()):04X})")
        encrypt_type = args.get("encrypt_type", "raw") or "raw"
        if encrypt_type == "raw":
            if self.cipher is not None:
                # Accepting plain pushes here would let anyone who knows only the Token forge them.
                raise BadPush(403, "safe mode: the push must be encrypted (encrypt_type=aes with msg_signature)")
            return text, 0
        if encrypt_type != "aes":
            raise BadPush(400, f"unsupported encrypt_type {encrypt_type!r}")
        if self.cipher is None:
            raise BadPush(400, "the push is encrypted but KF_ENCODING_AES_KEY is not set")
        envelope = read_xml(text, "not an encrypted WeChat push")
        encrypted = envelope.get("Encrypt") if isinstance(envelope, dict) else None
        if not isinstance(encrypted, str) or not encrypted:
            raise BadPush(400, "not an encrypted WeChat push: <Encrypt> is missing, empty or not text")
        self.cipher.verify(args.get("timestamp", ""), args.get("nonce", ""), encrypted, args.get("msg_signature"))
        return self.cipher.decrypt(encrypted)

    def binding_of(self, args: Mapping[str, str], body: bytes) -> Optional[Tuple[str, str]]:
        """A plain push's signed query and its body's digest: the signature does not cover the body, so
        one query must not carry two bodies. (In safe mode ``msg_signature`` covers the encrypted body.)"""
        if self.cipher is not None or not self.max_clock_skew:
            return None
        return f"{args.get('timestamp', '')}:{args.get('nonce', '')}", body_digest(body)

    def known_answer(self, message: Any) -> Optional[Known]:
        """The push's answer when ``plan`` knows it before the claim, rendered."""
        planned = self.plan(message) if self.plan is not None else None
        if planned is None:
            return None
        return Known(self.render(planned.reply), planned.then, planned.handoff)

    def render(self, reply: Optional[BaseReply]) -> str:
        return render_reply(reply, now=self.clock()) if reply is not None else ""

    def route_and_render(self, message: Any, conversation: Optional[Conversation] = None) -> str:
        reply = self.respond(message, conversation)
        if isinstance(reply, Slow):
            reply = reply.run() if self.late is None else self.respond_in_time(message, reply, self.late)
        return self.render(reply)

    def respond_in_time(self, message: Any, work: Slow, late: LateReplies) -> Optional[BaseReply]:
        """The handlers' reply if it comes within the budget; otherwise ``None`` now and delivery later."""
        future = late.executor.submit(work.run)
        try:
            return future.result(timeout=late.budget)
        except concurrent.futures.TimeoutError:
            log.warning("the handlers took more than %.1f s; answering 'success' and sending their reply "
                        "as a customer-service message when it comes", late.budget)
            late.on_late()
            future.add_done_callback(lambda done: _deliver(late, message, done))
            return None

    def seal(self, reply: str, args: Mapping[str, str], key_index: int) -> WebhookResponse:
        """The HTTP answer: ``success`` when there is nothing to say, encrypted if the push was."""
        if not reply:
            return WebhookResponse(200, "success")
        if args.get("encrypt_type") == "aes" and self.cipher is not None:
            reply = self.cipher.encrypt(reply, args.get("nonce", ""), str(int(self.clock())), key_index)
        return WebhookResponse(200, reply, XML)


def _deliver(late: LateReplies, message: Any, done: "concurrent.futures.Future[Any]") -> None:
    error = done.exception()
    if error is not None:
        log.error("a handler failed after its push was answered", exc_info=error)
        return
    late.deliver(message, done.result())
