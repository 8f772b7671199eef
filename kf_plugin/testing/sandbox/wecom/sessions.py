"""Each customer's session with each kf account: its service state, who serves it, and the event codes.

States (``service_state``): 0 new, 1 with the bot (智能助手), 2 in the pool (待接入池),
3 with a human servicer, 4 ended or not started. The API may move 0→1/2/3, 1→2/3, 2→3,
3→3 (another servicer) and 3→4; nothing leaves 4 but the customer's next message (→ 0,
a new session). A session is from that message to the state 4 that ends it.

Event codes are the credentials of ``send_msg_on_event``: each allows one message,
of the kinds and for the time below, and — but for the welcome code — only while the
session is in the state the code was given for.
"""
from __future__ import annotations

import math
import secrets
from dataclasses import dataclass, field
from typing import Dict, Optional, Set, Tuple

from .errors import INVALID_PARAMETER, WeComError

__all__ = ["Conversation", "SessionBoard", "EventCode", "CodeBook", "CODE_KINDS", "ALLOWED", "STATES",
           "NEW", "BOT", "POOL", "HUMAN", "ENDED"]

NEW, BOT, POOL, HUMAN, ENDED = 0, 1, 2, 3, 4
STATES = (NEW, BOT, POOL, HUMAN, ENDED)
ALLOWED: Dict[int, Set[int]] = {NEW: {BOT, POOL, HUMAN}, BOT: {POOL, HUMAN}, POOL: {HUMAN}, HUMAN: {HUMAN, ENDED},
                                ENDED: set()}

#: kind → (lifetime in seconds, message types it allows, the state the session must be in, or None).
CODE_KINDS: Dict[str, Tuple[int, Tuple[str, ...], Optional[int]]] = {
    "welcome": (20, ("text", "msgmenu"), None),
    "pool": (48 * 3600, ("text",), POOL),
    "taken": (48 * 3600, ("text",), HUMAN),
    "end": (20, ("text", "msgmenu"), ENDED),
}


@dataclass
class Conversation:
    """One customer with one account."""

    open_kfid: str
    external_userid: str
    state: int = ENDED
    servicer: Optional[str] = None
    last_customer_message: float = -math.inf
    sends_since_customer: int = 0  # send_msg messages since the customer's last message
    reached: Set[int] = field(default_factory=set)  # the states this session has been in
    last_welcome: float = -math.inf
    last_api_send: float = -math.inf

    def view(self) -> Dict[str, object]:
        """The session as ``service_state/get`` shows it."""
        return {"service_state": self.state, "servicer_userid": self.servicer or ""}


class SessionBoard:
    """Conversations by (open_kfid, external_userid); one never seen is in state 4."""

    def __init__(self) -> None:
        self._conversations: Dict[Tuple[str, str], Conversation] = {}

    def get(self, open_kfid: str, external_userid: str) -> Conversation:
        key = (open_kfid, external_userid)
        if key not in self._conversations:
            self._conversations[key] = Conversation(open_kfid, external_userid)
        return self._conversations[key]

    def all(self) -> Dict[Tuple[str, str], Conversation]:
        return dict(self._conversations)

    def forget_account(self, open_kfid: str) -> None:
        for key in [key for key in self._conversations if key[0] == open_kfid]:
            del self._conversations[key]

    @staticmethod
    def customer_wrote(conversation: Conversation, now: float) -> bool:
        """The customer sent a message: from state 4 a new session starts in state 0 (True).

        Either way the 5 messages the API may send start again from this one.
        """
        started = conversation.state == ENDED
        if started:
            conversation.state, conversation.servicer, conversation.reached = NEW, None, {NEW}
        conversation.last_customer_message = now
        conversation.sends_since_customer = 0
        return started

    @staticmethod
    def check_move(conversation: Conversation, target: object) -> int:
        """``target`` if the API may move the session there.

        :raises WeComError: 40058 a target that is not 0–4, or a change the rules do not allow.
        """
        if not isinstance(target, int) or isinstance(target, bool) or target not in STATES:
            raise WeComError(INVALID_PARAMETER, "service_state must be 0, 1, 2, 3 or 4")
        if target not in ALLOWED[conversation.state]:
            raise WeComError(INVALID_PARAMETER, f"service_state cannot change from {conversation.state} to {target}")
        return target

    @staticmethod
    def move(conversation: Conversation, target: int, servicer: Optional[str]) -> Optional[str]:
        """Put the session in ``target`` (with ``servicer`` in state 3); the kind of event code the change gives:
        the first pool (2) and the first human (3) state of a session, and every end (4)."""
        first = target not in conversation.reached
        conversation.state = target
        conversation.servicer = servicer if target == HUMAN else None
        conversation.reached.add(target)
        if target == ENDED:
            return "end"
        if first and target == POOL:
            return "pool"
        if first and target == HUMAN:
            return "taken"
        return None


@dataclass
class EventCode:
    code: str
    kind: str
    open_kfid: str
    external_userid: str
    expires_at: float
    used: bool = False

    @property
    def msgtypes(self) -> Tuple[str, ...]:
        return CODE_KINDS[self.kind][1]

    @property
    def state(self) -> Optional[int]:
        return CODE_KINDS[self.kind][2]


class CodeBook:
    """The event codes given out, by code."""

    def __init__(self) -> None:
        self._codes: Dict[str, EventCode] = {}

    def issue(self, kind: str, open_kfid: str, external_userid: str, now: float) -> str:
        code = EventCode(secrets.token_urlsafe(32), kind, open_kfid, external_userid, now + CODE_KINDS[kind][0])
        self._codes[code.code] = code
        return code.code

    def usable(self, code: object, now: float) -> EventCode:
        """The code, if it can still send its message (the caller marks it ``used`` once sent).

        :raises WeComError: 40058 a code unknown, used already or expired.
        """
        found = self._codes.get(code) if isinstance(code, str) else None
        if found is None:
            raise WeComError(INVALID_PARAMETER, "code is unknown")
        if found.used:
            raise WeComError(INVALID_PARAMETER, "code has been used: one message per code")
        if now >= found.expires_at:
            raise WeComError(INVALID_PARAMETER, f"the {found.kind} code has expired")
        return found

    def get(self, code: str) -> Optional[EventCode]:
        return self._codes.get(code)
