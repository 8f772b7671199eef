"""Everything WeChat knows about one official account, and the rules that join the parts.

No HTTP here: the server and the :class:`~kf_plugin.testing.sandbox.Sandbox` facade both
call these methods while holding :attr:`SandboxState.lock`. Time comes from the
injected ``clock`` only, so tests move it by hand.
"""
from __future__ import annotations

import threading
from typing import Callable, Dict, List, Mapping, Optional

from .accounts import AccountBook, KfAccount
from .errors import ApiError
from .messages import CustomMessage
from .records import RECEIVED, SENT, RecordBook
from .sessions import Session, SessionBoard, SessionEvent
from .tokens import TokenIssuer
from .window import Quota, ReplyWindow

__all__ = ["SandboxState"]


class SandboxState:
    """The WeChat-side state: tokens, kf accounts, users and their window, sessions, records, sent messages."""

    def __init__(self, appid: str, secret: str, clock: Callable[[], float],
                 quotas: Optional[Mapping[str, Quota]] = None, kf_enabled: bool = True,
                 token_daily_limit: int = 2000):
        self.lock = threading.RLock()
        self.clock = clock
        self.kf_enabled = kf_enabled
        self.tokens = TokenIssuer(appid, secret, clock, token_daily_limit)
        self.accounts = AccountBook()
        self.window = ReplyWindow(quotas)
        self.sessions = SessionBoard()
        self.records = RecordBook()
        self.sent: List[dict] = []
        self._announced: List[SessionEvent] = []  # events API calls caused, for WeChat to push once answered

    def now(self) -> float:
        return self.clock()

    def require_kf(self) -> None:
        """:raises ApiError: 65400 when the customer-service function is switched off."""
        if not self.kf_enabled:
            raise ApiError(65400)

    # -- accounts -------------------------------------------------------------

    def delete_account(self, kf_account: object) -> None:
        """Delete the account; its open sessions end with it.

        :raises ApiError: 65401 unknown account.
        """
        account = self.accounts.delete(kf_account)
        self.sessions.end_all_of(account.kf_account)

    def online_list(self) -> List[dict]:
        return [{"kf_account": a.kf_account, "status": a.status, "kf_id": str(a.kf_id),
                 "accepted_case": len(self.sessions.of_agent(a.kf_account))}
                for a in self.accounts if a.online]

    # -- sessions -------------------------------------------------------------

    def serving_account(self, kf_account: object) -> KfAccount:
        """The account, if it can take a session now.

        :raises ApiError: 65401 unknown account, 65402 unbound, 65415 offline.
        """
        account = self.accounts.get(kf_account)
        if account.wx is None:
            raise ApiError(65402)
        if not account.online:
            raise ApiError(65415)
        return account

    def create_session(self, kf_account: object, openid: object) -> Optional[SessionEvent]:
        """Open a session; its ``kf_create_session`` event, or None when the same session was open already.

        :raises ApiError: 65401 unknown account, 65402 unbound, 65415 offline,
            40003 the user never interacted, 43004 the user unfollowed, 65414 another agent serves them.
        """
        account = self.serving_account(kf_account)
        customer = self.window.get(openid) if isinstance(openid, str) else None
        if customer is None:
            raise ApiError(40003)
        if not customer.subscribed:
            raise ApiError(43004)
        already = self.sessions.serving(customer.openid) is not None
        self.sessions.open(customer.openid, account.kf_account, self.now())  # 65414: another agent serves them
        return None if already else SessionEvent.created(customer.openid, account.kf_account)

    def close_session(self, kf_account: object, openid: object) -> SessionEvent:
        """Close a session; its ``kf_close_session`` event.

        :raises ApiError: 65401 unknown account, 65413 no session, 65414 another agent serves the user.
        """
        account = self.accounts.get(kf_account)
        if not isinstance(openid, str):
            raise ApiError(65413)
        self.sessions.close(openid, account.kf_account)
        return SessionEvent.closed(openid, account.kf_account)

    def switch_session(self, openid: str, to_kf_account: str) -> SessionEvent:
        """Move the user's session to ``to_kf_account``; its ``kf_switch_session`` event.

        :raises ApiError: 65401 unknown account, 65402 unbound, 65415 offline, 65413 no session.
        :raises ValueError: ``to_kf_account`` serves the user already.
        """
        account = self.serving_account(to_kf_account)
        left = self.sessions.switch(openid, account.kf_account, self.now())
        return SessionEvent.switched(openid, left.kf_account, account.kf_account)

    def transfer(self, openid: str, kf_account: Optional[str]) -> Optional[SessionEvent]:
        """The bot answered a transfer: ``kf_account``'s session opens if that agent can take it (its event),
        otherwise the user waits in the queue (None). A user in a session already stays there, and one who
        unfollowed goes nowhere (None)."""
        customer = self.window.get(openid)
        if customer is None or not customer.subscribed or self.sessions.serving(openid) is not None:
            return None
        if kf_account is not None:
            try:
                return self.create_session(kf_account, openid)
            except ApiError:
                pass  # WeChat queues the user when the named agent cannot take them
        self.enqueue(openid)
        return None

    def announce(self, event: SessionEvent) -> None:
        """An API call caused ``event``: WeChat pushes it once the call is answered."""
        self._announced.append(event)

    def take_announcements(self) -> List[SessionEvent]:
        """The events announced since the last call, oldest first."""
        events, self._announced = self._announced, []
        return events

    def get_session(self, openid: object) -> dict:
        """:raises ApiError: 40003 the user never interacted."""
        if not isinstance(openid, str) or not self.window.knows(openid):
            raise ApiError(40003)
        session = self.sessions.serving(openid)
        if session is None:
            return {"createtime": 0, "kf_account": ""}
        return {"createtime": session.createtime, "kf_account": session.kf_account}

    def session_list(self, kf_account: object) -> List[dict]:
        """:raises ApiError: 65401 unknown account."""
        account = self.accounts.get(kf_account)
        return [{"createtime": s.createtime, "openid": s.openid} for s in self.sessions.of_agent(account.kf_account)]

    def enqueue(self, openid: str) -> None:
        """:raises ValueError: the user never interacted, unfollowed, or is in a session."""
        customer = self.window.get(openid)
        if customer is None or not customer.subscribed:
            raise ValueError(f"{openid!r} is not a following user who interacted; call interact first")
        self.sessions.enqueue(openid, self.now())

    def unsubscribe(self, openid: str) -> None:
        """:raises ValueError: the user never interacted."""
        self.window.unsubscribe(openid)
        self.sessions.end(openid)

    # -- the conversation -----------------------------------------------------

    def user_says(self, openid: str, text: str) -> Optional[Session]:
        """The user sends a text: an interaction; with an agent, a record received by that agent; in the
        wait queue, the ``latest_time`` of their place.

        The session the text went to, or None when WeChat pushes it to the bot.

        :raises ValueError: an empty openid.
        """
        now = self.now()
        self.window.interact(openid, "message", now)
        session = self.sessions.serving(openid)
        if session is not None:
            self.records.add(openid, text, RECEIVED, session.kf_account, now)
        elif self.sessions.waits(openid):
            self.sessions.enqueue(openid, now)
        return session

    def agent_says(self, openid: str, text: str) -> Session:
        """The serving agent writes to the user from the console: a record sent by that agent.

        :raises ApiError: 65413 no session for the user.
        """
        session = self.sessions.serving(openid)
        if session is None:
            raise ApiError(65413)
        self.records.add(openid, text, SENT, session.kf_account, self.now())
        return session

    # -- messages -------------------------------------------------------------

    def send(self, message: CustomMessage) -> None:
        """Deliver a custom message, using one unit of the user's window.

        :raises ApiError: 65400 sent as an agent while kf is off, 65401 unknown
            agent, 45015 outside the window, 45047 over the quota.
        """
        if message.kf_account is not None:
            self.require_kf()
            self.accounts.get(message.kf_account)
        self.window.consume(message.touser, self.now())
        now = self.now()
        self.sent.append({"touser": message.touser, "msgtype": message.msgtype,
                          message.msgtype: message.content, "kf_account": message.kf_account, "time": now})
        if message.kf_account is not None:
            self.records.add(message.touser, message.record_text(), SENT, message.kf_account, now)

    def typing(self, openid: object, command: object) -> None:
        """:raises ApiError: 40003 no touser, 45072, 45080, 45081 (see :meth:`ReplyWindow.typing`)."""
        if not isinstance(openid, str) or not openid:
            raise ApiError(40003)
        self.window.typing(openid, command, self.now())

    # -- views ----------------------------------------------------------------

    def sessions_view(self) -> Dict[str, dict]:
        return {s.openid: {"kf_account": s.kf_account, "createtime": s.createtime} for s in self.sessions.all()}

    def agents_view(self) -> Dict[str, dict]:
        now = self.now()
        view = {}
        for account in self.accounts:
            entry = account.list_entry(now)
            entry.update(online=account.online, status=account.status,
                         accepted_case=len(self.sessions.of_agent(account.kf_account)))
            view[account.kf_account] = entry
        return view
