"""Everything WeCom knows about one corp's customer service, and the rules that join the parts.

No HTTP here: the API side and the :class:`~kf_plugin.testing.sandbox.wecom.WeComSandbox`
facade call these methods holding :attr:`WeComState.lock`. Each new message or event is
an :class:`~.inbox.Item`; the items added since the last :meth:`WeComState.take_fresh`
are the ones WeCom tells the bot about (one ``kf_msg_or_event`` callback each).

Rules of the conversation played here:

- A customer's message is an item (origin 3); from state 4 it starts a session (state 0),
  and it lets the API send 5 messages within the next 48 hours (95001 after that).
- Entering the chat is an ``enter_session`` item; it carries a ``welcome_code`` when the
  customer got no welcome and no API message from this account in the last 48 hours.
- ``send_msg`` works in states 0 and 1 only (95018); sent messages are no items.
- Servicers act from WeCom's client: taking a customer from the pool (change_type 1, with a
  ``msg_code``), from another servicer (2), reopening an ended session (4), ending one (3,
  with a ``msg_code``) — each a ``session_status_change`` item; what they write is an item
  with origin 5. API calls that change the state make no item (their answer has the code).
"""
from __future__ import annotations

import secrets
import threading
from typing import Any, Callable, Dict, List, Optional, Set, Tuple

from .directory import Directory, KfAccount
from .errors import INVALID_PARAMETER, WeComError
from .inbox import Inbox, Item
from .messages import Outgoing
from .sessions import BOT, ENDED, HUMAN, NEW, POOL, CodeBook, Conversation, SessionBoard
from .tokens import CorpTokens

__all__ = ["WeComState", "SEND_WINDOW", "SENDS_PER_CUSTOMER_MESSAGE", "FAIL_TYPES"]

SEND_WINDOW = 48 * 3600
SENDS_PER_CUSTOMER_MESSAGE = 5
WELCOME_SPACING = 48 * 3600
#: msg_send_fail's fail_type values: 0 unknown, 1 account deleted, 2 app closed, 4 beyond 48 h, 5 session
#: closed, 6 over 5 messages, 7 no video account, 8 unverified, 9 both, 10 the customer refused.
FAIL_TYPES = (0, 1, 2, 4, 5, 6, 7, 8, 9, 10)


class WeComState:
    """The WeCom-side state: tokens, accounts, members, customers, sessions, codes, items, sent messages."""

    def __init__(self, corpid: str, secret: str, clock: Callable[[], float], token_daily_limit: int = 2000):
        self.lock = threading.RLock()
        self.clock = clock
        self.corpid = corpid
        self.api_enabled = True
        self.tokens = CorpTokens(corpid, secret, clock, token_daily_limit)
        self.directory = Directory()
        self.board = SessionBoard()
        self.codes = CodeBook()
        self.inbox = Inbox()
        self.sent: List[Dict[str, Any]] = []
        self._sent_ids: Set[str] = set()
        self._menus: Dict[Tuple[str, str], Set[str]] = {}  # (open_kfid, external_userid) -> menu ids offered
        self._fresh: List[Item] = []
        # For the statistics: (open_kfid, external_userid, at) of each session a customer's message started,
        # (open_kfid, servicer, external_userid, at) of each time a servicer took a session.
        self.session_starts: List[Tuple[str, str, float]] = []
        self.human_starts: List[Tuple[str, str, str, float]] = []

    def now(self) -> float:
        return self.clock()

    def take_fresh(self) -> List[Item]:
        """The items added since the last call, oldest first."""
        fresh, self._fresh = self._fresh, []
        return fresh

    def _new(self, item: Item) -> Item:
        self._fresh.append(item)
        return item

    def conversation(self, open_kfid: object, external_userid: object) -> Conversation:
        """:raises WeComError: 95000/95004 the account, 40096 an unknown customer."""
        account = self.directory.account(open_kfid)
        customer = self.directory.customer(external_userid)
        return self.board.get(account.open_kfid, customer.external_userid)

    # -- the customer ------------------------------------------------------------------------

    def customer_says(self, open_kfid: str, external_userid: str, text: str, menu_id: Optional[str]) -> Item:
        """:raises WeComError: 95000/95004 the account. :raises ValueError: empty text, a menu_id never offered."""
        account = self.directory.account(open_kfid)
        if not isinstance(text, str) or not text:
            raise ValueError("text must be a non-empty string")
        if menu_id is not None and menu_id not in self._menus.get((account.open_kfid, external_userid), set()):
            raise ValueError(f"menu_id {menu_id!r} is in no menu sent to {external_userid}: send a msgmenu first")
        self.directory.ensure_customer(external_userid)
        conversation = self.board.get(account.open_kfid, external_userid)
        now = self.now()
        if self.board.customer_wrote(conversation, now):
            self.session_starts.append((account.open_kfid, external_userid, now))
        message: Dict[str, Any] = {"content": text}
        if menu_id is not None:
            message["menu_id"] = menu_id
        return self._new(self.inbox.add_message(account.open_kfid, external_userid, 3,
                                                {"msgtype": "text", "text": message}, now, conversation.servicer))

    def customer_enters(self, open_kfid: str, external_userid: str, scene: Optional[str],
                        scene_param: Optional[str]) -> Item:
        """:raises WeComError: 95000/95004 the account. :raises ValueError: a bad scene or scene_param."""
        account = self.directory.account(open_kfid)
        self.directory.check_scene(account.open_kfid, scene, scene_param)
        customer = self.directory.ensure_customer(external_userid)
        conversation = self.board.get(account.open_kfid, external_userid)
        now = self.now()
        event: Dict[str, Any] = {"event_type": "enter_session", "open_kfid": account.open_kfid,
                                 "external_userid": external_userid}
        if scene is not None:
            event["scene"] = scene
            customer.enter_context = {"scene": scene, "scene_param": scene_param or ""}
        if scene_param is not None:
            event["scene_param"] = scene_param
        if now - conversation.last_welcome >= WELCOME_SPACING and now - conversation.last_api_send >= SEND_WINDOW:
            event["welcome_code"] = self.codes.issue("welcome", account.open_kfid, external_userid, now)
        return self._new(self.inbox.add_event(account.open_kfid, external_userid, event, now))

    def customer_recalls(self, open_kfid: str, external_userid: str, msgid: str) -> Item:
        """:raises ValueError: ``msgid`` is no message of this customer to this account."""
        item = self.inbox.find(msgid)
        if item is None or item.body.get("origin") != 3 or (item.open_kfid, item.external_userid) != (
                open_kfid, external_userid):
            raise ValueError(f"{msgid!r} is no message {external_userid} sent to {open_kfid}")
        event = {"event_type": "user_recall_msg", "open_kfid": open_kfid, "external_userid": external_userid,
                 "recall_msgid": msgid}
        return self._new(self.inbox.add_event(open_kfid, external_userid, event, self.now()))

    # -- the servicers -----------------------------------------------------------------------

    def servicer_takes(self, open_kfid: str, external_userid: str, servicer: str) -> Item:
        """:raises WeComError: 95000/95004, 40096, 95014 ``servicer`` cannot take sessions.
        :raises ValueError: the session is with the bot, new, or with ``servicer`` already."""
        conversation = self.conversation(open_kfid, external_userid)
        account = self.directory.account(open_kfid)
        self.directory.receiving_servicer(account, servicer)
        old = conversation.servicer
        change_type = {POOL: 1, HUMAN: 2, ENDED: 4}.get(conversation.state)
        if change_type is None or old == servicer:
            raise ValueError(f"{servicer} can take {external_userid} only from the pool, another servicer or an "
                             f"ended session (state {conversation.state}, servicer {old or '-'})")
        event: Dict[str, Any] = {"event_type": "session_status_change", "open_kfid": open_kfid,
                                 "external_userid": external_userid, "change_type": change_type,
                                 "new_servicer_userid": servicer}
        if old is not None:
            event["old_servicer_userid"] = old
        if change_type == 4:
            conversation.reached = {HUMAN}
        kind = self.board.move(conversation, HUMAN, servicer)
        self._human_started(conversation, servicer)
        if change_type == 1 and kind is not None:
            event["msg_code"] = self.codes.issue(kind, open_kfid, external_userid, self.now())
        return self._new(self.inbox.add_event(open_kfid, external_userid, event, self.now()))

    def servicer_ends(self, open_kfid: str, external_userid: str) -> Item:
        """:raises WeComError: 95000/95004, 40096. :raises ValueError: no servicer serves the session."""
        conversation = self.conversation(open_kfid, external_userid)
        if conversation.state != HUMAN:
            raise ValueError(f"no servicer serves {external_userid} on {open_kfid} (state {conversation.state})")
        old = conversation.servicer
        kind = self.board.move(conversation, ENDED, None)
        event = {"event_type": "session_status_change", "open_kfid": open_kfid, "external_userid": external_userid,
                 "change_type": 3, "old_servicer_userid": old,
                 "msg_code": self.codes.issue(kind or "end", open_kfid, external_userid, self.now())}
        return self._new(self.inbox.add_event(open_kfid, external_userid, event, self.now()))

    def servicer_says(self, open_kfid: str, external_userid: str, text: str) -> Item:
        """:raises WeComError: 95000/95004, 40096. :raises ValueError: empty text, no servicer serves the session."""
        conversation = self.conversation(open_kfid, external_userid)
        if not isinstance(text, str) or not text:
            raise ValueError("text must be a non-empty string")
        if conversation.state != HUMAN:
            raise ValueError(f"no servicer serves {external_userid} on {open_kfid} (state {conversation.state})")
        message = {"msgtype": "text", "text": {"content": text}}
        return self._new(self.inbox.add_message(open_kfid, external_userid, 5, message, self.now(),
                                                conversation.servicer))

    def set_receiving(self, userid: str, receiving: bool) -> List[Item]:
        """The member starts (True) or stops receiving: a ``servicer_status_change`` item per account they serve.

        :raises ValueError: an unknown member.
        """
        member = self.directory.members.get(userid)
        if member is None:
            raise ValueError(f"{userid!r} is no member; add_servicer adds them")
        if member.receiving == receiving:
            return []
        member.receiving = receiving
        return [self._new(self.inbox.add_event(account.open_kfid, None, {
            "event_type": "servicer_status_change", "servicer_userid": userid, "status": 1 if receiving else 2,
            "open_kfid": account.open_kfid}, self.now()))
            for account in self.directory.accounts.values() if userid in account.servicers]

    def fail_delivery(self, msgid: str, fail_type: int) -> Item:
        """:raises ValueError: ``msgid`` is no message the bot sent, or an unknown ``fail_type``."""
        sent = next((message for message in self.sent if message["msgid"] == msgid), None)
        if sent is None:
            raise ValueError(f"{msgid!r} is no message sent through the API")
        if fail_type not in FAIL_TYPES:
            raise ValueError(f"fail_type must be one of {FAIL_TYPES}, got {fail_type!r}")
        event = {"event_type": "msg_send_fail", "open_kfid": sent["open_kfid"], "external_userid": sent["touser"],
                 "fail_msgid": msgid, "fail_type": fail_type}
        return self._new(self.inbox.add_event(sent["open_kfid"], sent["touser"], event, self.now()))

    def _human_started(self, conversation: Conversation, servicer: str) -> None:
        self.human_starts.append((conversation.open_kfid, servicer, conversation.external_userid, self.now()))

    # -- the API -----------------------------------------------------------------------------

    def trans(self, body: Dict[str, Any]) -> Dict[str, Any]:
        """``service_state/trans``: move the session; the ``msg_code`` when the change gives one.

        :raises WeComError: 95000/95004, 40096, 40058 a change not allowed, 95014 for state 3.
        """
        conversation = self.conversation(body.get("open_kfid"), body.get("external_userid"))
        target = self.board.check_move(conversation, body.get("service_state"))
        servicer = None
        if target == HUMAN:
            account = self.directory.account(conversation.open_kfid)
            servicer = self.directory.receiving_servicer(account, body.get("servicer_userid"))
            if conversation.state == HUMAN and conversation.servicer == servicer:
                raise WeComError(INVALID_PARAMETER, f"{servicer} serves the session already")
        kind = self.board.move(conversation, target, servicer)
        if servicer is not None:
            self._human_started(conversation, servicer)
        if kind is None:
            return {}
        return {"msg_code": self.codes.issue(kind, conversation.open_kfid, conversation.external_userid, self.now())}

    def send(self, body: Dict[str, Any], message: Outgoing) -> str:
        """``send_msg``: the msgid of the accepted message.

        :raises WeComError: 95000/95004, 40096, 95018 not in state 0 or 1, 95001 the 5 messages after the
            customer's last one are used or 48 hours have passed, 40058 a msgid used already.
        """
        conversation = self.conversation(body.get("open_kfid"), body.get("touser"))
        if conversation.state not in (NEW, BOT):
            raise WeComError(95018, f"service_state is {conversation.state}")
        now = self.now()
        if now - conversation.last_customer_message >= SEND_WINDOW:
            raise WeComError(95001, "48 hours have passed since the customer's last message")
        if conversation.sends_since_customer >= SENDS_PER_CUSTOMER_MESSAGE:
            raise WeComError(95001, f"{SENDS_PER_CUSTOMER_MESSAGE} messages since the customer's last message")
        msgid = self._record(conversation, message, None)
        conversation.sends_since_customer += 1
        conversation.last_api_send = now
        return msgid

    def send_on_event(self, message: Outgoing, code: object) -> str:
        """``send_msg_on_event``: the msgid of the message the code allows.

        :raises WeComError: 40058 a code unknown, used or expired; 40008 a type the code does not allow;
            95018 the session left the state the code was given for; 40058 a msgid used already.
        """
        event_code = self.codes.usable(code, self.now())
        if message.msgtype not in event_code.msgtypes:
            raise WeComError(40008, f"a {event_code.kind} code sends {' or '.join(event_code.msgtypes)}")
        conversation = self.board.get(event_code.open_kfid, event_code.external_userid)
        if event_code.state is not None and conversation.state != event_code.state:
            raise WeComError(95018, f"the {event_code.kind} code needs service_state {event_code.state}, "
                                    f"the session is in {conversation.state}")
        msgid = self._record(conversation, message, event_code.kind)
        event_code.used = True
        if event_code.kind == "welcome":
            conversation.last_welcome = self.now()
        return msgid

    def _record(self, conversation: Conversation, message: Outgoing, code_kind: Optional[str]) -> str:
        if message.msgid is not None and message.msgid in self._sent_ids:
            raise WeComError(INVALID_PARAMETER, f"msgid {message.msgid} has been used")
        msgid = message.msgid or secrets.token_urlsafe(24)
        self._sent_ids.add(msgid)
        key = (conversation.open_kfid, conversation.external_userid)
        self._menus.setdefault(key, set()).update(message.menu_ids())
        self.sent.append({"msgid": msgid, "open_kfid": conversation.open_kfid, "touser": conversation.external_userid,
                          "msgtype": message.msgtype, message.msgtype: message.content, "on_event": code_kind,
                          "time": self.now()})
        return msgid

    def delete_account(self, open_kfid: object) -> KfAccount:
        """:raises WeComError: 95000/95004."""
        account = self.directory.delete_account(open_kfid)
        self.board.forget_account(account.open_kfid)
        return account
