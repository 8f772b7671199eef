"""Everything WeChat knows about one official account, and the rules that join the parts.

No HTTP here: the server and the :class:`~kf_plugin.testing.sandbox.Sandbox` facade both
call these methods while holding :attr:`SandboxState.lock`. Time comes from the
injected ``clock`` only, so tests move it by hand.
"""
from __future__ import annotations

import threading
from typing import Callable, Dict, List, Mapping, Optional

from .accounts import AccountBook
from .errors import ApiError
from .messages import CustomMessage
from .records import SENT, RecordBook
from .sessions import SessionBoard
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

    def create_session(self, kf_account: object, openid: object) -> None:
        """:raises ApiError: 65401 unknown account, 65402 unbound, 65415 offline,
            40003 the user never interacted, 43004 the user unfollowed, 65414 another agent serves them.
        """
        account = self.accounts.get(kf_account)
        if account.wx is None:
            raise ApiError(65402)
        if not account.online:
            raise ApiError(65415)
        customer = self.window.get(openid) if isinstance(openid, str) else None
        if customer is None:
            raise ApiError(40003)
        if not customer.subscribed:
            raise ApiError(43004)
        self.sessions.open(customer.openid, account.kf_account, self.now())

    def close_session(self, kf_account: object, openid: object) -> None:
        """:raises ApiError: 65401 unknown account, 65413 no session, 65414 another agent serves the user."""
        account = self.accounts.get(kf_account)
        if not isinstance(openid, str):
            raise ApiError(65413)
        self.sessions.close(openid, account.kf_account)

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
