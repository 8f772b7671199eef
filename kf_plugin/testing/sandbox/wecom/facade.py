"""The :class:`WeComSandbox` facade (``sandbox.wecom``): control and inspection of WeCom's customer service."""
from __future__ import annotations

import copy
from typing import Any, Callable, Dict, List, Optional, Tuple

from ..pushes import DEFAULT_TIMEOUT
from .api import WeComApi
from .callbacks import Callback, Notifier, WeComBot
from .sessions import ENDED
from .state import WeComState

__all__ = ["WeComSandbox", "DEFAULT_CORPID", "DEFAULT_CORP_SECRET", "DEFAULT_AGENTID"]

DEFAULT_CORPID = "wwsandbox00000000"
DEFAULT_CORP_SECRET = "sandbox-corp-secret"
DEFAULT_AGENTID = "1000002"


class WeComSandbox:
    """WeCom's side of the sandbox: the ``/cgi-bin/gettoken`` and ``/cgi-bin/kf/...`` API, and the customers and
    servicers of 微信客服 — served by the same server as the Official Account's API, on the same clock.

    ::

        kfid = sandbox.wecom.add_account("客服")
        sandbox.wecom.add_servicer(kfid, "zhangsan")
        sandbox.wecom.connect_bot(bot.url + "/wecom", "token", aes_key)
        sandbox.wecom.customer_says(kfid, "wmCustomer", "你好")   # a kf_msg_or_event callback to the bot
        sandbox.wecom.wait_for_callbacks()
        assert sandbox.wecom.sent[-1]["text"] == {"content": "您好"}

    ``latency``: seconds every WeCom API call (``gettoken`` and ``/cgi-bin/kf/...``) waits, in real time,
    before it is answered — WeCom's round trip; calls in flight wait side by side, never one after another.
    Settable later (:attr:`latency`). ``sandbox.faults.add_latency`` delays chosen paths on top of it.

    Every control method applies WeCom's rules and raises
    :class:`~kf_plugin.testing.sandbox.wecom.WeComError` (a ``ValueError`` carrying the errcode the API
    would answer) when one refuses, or ``ValueError`` for a call the real world cannot produce.
    Every new message or event is kept for ``sync_msg`` and, with a connected bot, announced to it
    by a callback in the background. Every method is thread-safe.
    """

    def __init__(self, clock: Callable[[], float], corpid: str = DEFAULT_CORPID, secret: str = DEFAULT_CORP_SECRET,
                 token_daily_limit: int = 2000, agentid: str = DEFAULT_AGENTID, latency: float = 0.0):
        self.corpid = corpid
        self.secret = secret
        self.agentid = agentid
        self.clock = clock
        self.state = WeComState(corpid, secret, clock, token_daily_limit)
        self._notifier = Notifier()
        self.api = WeComApi(self.state)
        self.api.latency = latency

    def __repr__(self) -> str:
        return f"<WeComSandbox corpid={self.corpid!r}>"

    def _announce(self) -> None:
        """Called holding the lock, after a change: queue the callbacks for the items it added (the bot is called
        on the background thread, so a bot calling the API while it handles one is answered)."""
        self._notifier.announce(self.state)

    # -- accounts, servicers, customers ----------------------------------------------------

    @property
    def latency(self) -> float:
        """Seconds every WeCom API call waits before it is answered (see the class).

        :raises ValueError: (setting) not a number from 0 to 60.
        """
        return self.api.latency

    @latency.setter
    def latency(self, seconds: float) -> None:
        self.api.latency = seconds

    @property
    def api_enabled(self) -> bool:
        """False: every ``/cgi-bin/kf/`` call answers 95017 (the kf API is switched off for the app)."""
        return self.state.api_enabled

    @api_enabled.setter
    def api_enabled(self, enabled: bool) -> None:
        with self.state.lock:
            self.state.api_enabled = enabled

    def add_account(self, name: str = "客服", media_id: str = "sandbox-media-id") -> str:
        """A new kf account, by the rules of ``account/add``; its open_kfid.

        :raises WeComError: 40058 a name that is not 1–16 characters, 41006/40007 a bad media_id.
        """
        with self.state.lock:
            return self.state.directory.add_account(name, media_id).open_kfid

    def add_servicer(self, open_kfid: str, userid: str, *, receiving: bool = True, activated: bool = True) -> None:
        """Make ``userid`` a member of the corp (``activated`` WeCom or not) and a servicer of the account;
        ``receiving`` sets the member's status as :meth:`set_receiving` does (without an event).

        :raises WeComError: 95000/95004 the account. :raises ValueError: a malformed userid.
        """
        with self.state.lock:
            self.state.directory.account(open_kfid)
            member = self.state.directory.add_member(userid, activated)
            member.receiving = receiving
            self.state.directory.change_servicers(open_kfid, [userid], add=True)

    def add_member(self, userid: str, *, activated: bool = True) -> None:
        """A member of the corp who is no servicer yet (``servicer/add`` takes only members: 60111 otherwise).

        :raises ValueError: a malformed userid.
        """
        with self.state.lock:
            self.state.directory.add_member(userid, activated)

    def set_receiving(self, userid: str, receiving: bool = True) -> None:
        """The member starts or stops receiving customers: a ``servicer_status_change`` event (status 1
        receiving, 2 stopped) for each account they serve. Their open sessions stay theirs.

        :raises ValueError: ``userid`` is no member.
        """
        with self.state.lock:
            self.state.set_receiving(userid, receiving)
            self._announce()

    def add_customer(self, external_userid: str, nickname: Optional[str] = None, *, gender: int = 0,
                     unionid: Optional[str] = None) -> None:
        """A WeChat customer the corp knows, with this profile (as ``customer/batchget`` shows it; None keeps the
        nickname they have); customers who write or enter are added with a default profile anyway.

        :raises ValueError: an empty external_userid, a gender outside 0–2.
        """
        with self.state.lock:
            self.state.directory.set_profile(external_userid, nickname, gender, unionid)

    # -- the customer --------------------------------------------------------------------

    def customer_says(self, open_kfid: str, external_userid: str, text: str, menu_id: Optional[str] = None) -> str:
        """The customer writes ``text`` (``menu_id``: they clicked that option of a menu the bot sent); its msgid.

        From state 4 it starts a new session (state 0); the API may then send 5 messages in 48 hours.

        :raises WeComError: 95000/95004 the account.
        :raises ValueError: empty text, an empty external_userid, a menu_id in no menu sent to the customer.
        """
        with self.state.lock:
            item = self.state.customer_says(open_kfid, external_userid, text, menu_id)
            self._announce()
            return item.msgid

    def customer_enters(self, open_kfid: str, external_userid: str, scene: Optional[str] = None,
                        scene_param: Optional[str] = None) -> Dict[str, Any]:
        """The customer opens the chat (from a link with ``scene``, and ``scene_param`` appended); the
        ``enter_session`` item, whose ``event`` has a ``welcome_code`` when a welcome may be sent.

        :raises WeComError: 95000/95004 the account.
        :raises ValueError: a scene over 32 bytes or outside [0-9a-zA-Z_-], a scene_param over 128 bytes or
            without a scene.
        """
        with self.state.lock:
            item = self.state.customer_enters(open_kfid, external_userid, scene, scene_param)
            self._announce()
            return copy.deepcopy(item.body)

    def customer_recalls(self, open_kfid: str, external_userid: str, msgid: str) -> None:
        """The customer recalls their message ``msgid``: a ``user_recall_msg`` event.

        :raises ValueError: ``msgid`` is no message of this customer to this account.
        """
        with self.state.lock:
            self.state.customer_recalls(open_kfid, external_userid, msgid)
            self._announce()

    # -- the servicers ---------------------------------------------------------------------

    def servicer_takes(self, open_kfid: str, external_userid: str, servicer: str) -> Dict[str, Any]:
        """``servicer`` takes the customer in WeCom's client: from the pool (change_type 1, with a ``msg_code``),
        from another servicer (2, a transfer) or reopening an ended session (4); the ``session_status_change``
        item. The session is then in state 3 with ``servicer``.

        :raises WeComError: 95000/95004 the account, 40096 an unknown customer, 95014 ``servicer`` is not an
            activated, receiving servicer of the account.
        :raises ValueError: the session is new (0), with the bot (1), or with ``servicer`` already.
        """
        with self.state.lock:
            item = self.state.servicer_takes(open_kfid, external_userid, servicer)
            self._announce()
            return copy.deepcopy(item.body)

    def servicer_ends(self, open_kfid: str, external_userid: str) -> Dict[str, Any]:
        """The serving servicer ends the session (state 4): a ``session_status_change`` item with change_type 3
        and a ``msg_code`` (for an end message within 20 s); the item.

        :raises WeComError: 95000/95004, 40096. :raises ValueError: no servicer serves the session.
        """
        with self.state.lock:
            item = self.state.servicer_ends(open_kfid, external_userid)
            self._announce()
            return copy.deepcopy(item.body)

    def servicer_says(self, open_kfid: str, external_userid: str, text: str) -> str:
        """The serving servicer writes ``text`` from WeCom's client (a message with origin 5); its msgid.

        :raises WeComError: 95000/95004, 40096. :raises ValueError: empty text, no servicer serves the session.
        """
        with self.state.lock:
            item = self.state.servicer_says(open_kfid, external_userid, text)
            self._announce()
            return item.msgid

    def fail_delivery(self, msgid: str, fail_type: int = 0) -> None:
        """WeCom could not deliver the message ``msgid`` the bot sent: a ``msg_send_fail`` event (fail_type 0
        unknown, 1 account deleted, 2 app closed, 4 beyond 48 h, 5 session closed, 6 over 5 messages,
        7/8/9 video account and verification, 10 the customer refused).

        :raises ValueError: ``msgid`` is no message sent through the API, or an unknown fail_type.
        """
        with self.state.lock:
            self.state.fail_delivery(msgid, fail_type)
            self._announce()

    def invalidate_tokens(self) -> None:
        """Every access token issued so far answers 40014 from now on (as after a secret reset)."""
        with self.state.lock:
            self.state.tokens.invalidate_all()

    # -- the bot ---------------------------------------------------------------------------

    def connect_bot(self, url: str, token: str, encoding_aes_key: str, corpid: Optional[str] = None, *,
                    timeout: float = DEFAULT_TIMEOUT) -> None:
        """Send every new message's or event's ``kf_msg_or_event`` callback to ``url`` from now on, encrypted with
        ``encoding_aes_key`` for ``corpid`` (the receive id; the sandbox's corpid by default) and signed with
        ``token``. Each waits ``timeout`` seconds and is sent once. Connecting again replaces the bot.

        :raises ValueError: a URL that is not http(s), an empty token or corpid, a bad timeout.
        :raises ConfigError: an EncodingAESKey that is not 43 letters and digits.
        """
        bot = WeComBot(url, token, encoding_aes_key, self.corpid if corpid is None else corpid, self.agentid, timeout,
                      self.clock)
        with self.state.lock:
            self._notifier.bot = bot

    @property
    def bot(self) -> Optional[WeComBot]:
        """The connected bot (``url``, ``token``, ``corpid``), None without one."""
        return self._notifier.bot

    def disconnect_bot(self) -> None:
        """Send no callbacks from now on (messages and events still queue for ``sync_msg``)."""
        with self.state.lock:
            self._notifier.bot = None

    def verify_bot(self) -> bool:
        """Check the bot's URL as WeCom does when it is saved: a GET with an encrypted ``echostr``; whether the
        bot answered its plaintext.

        :raises ValueError: no bot is connected. :raises BotUnreachableError: the bot did not answer.
        """
        bot = self._notifier.bot
        if bot is None:
            raise ValueError("no bot is connected: call connect_bot first")
        return bot.verify()

    def wait_for_callbacks(self, timeout: float = 5.0) -> None:
        """Wait until the callbacks sent in the background have been answered.

        :raises TimeoutError: some are still under way after ``timeout`` seconds.
        """
        self._notifier.wait(timeout)

    @property
    def callbacks(self) -> List[Callback]:
        """Every callback sent, in order: open_kfid, token, xml, at, and the bot's status and body (or error)."""
        return self._notifier.callbacks

    # -- inspection (copies: they never change under the caller) ---------------------------

    @property
    def sent(self) -> List[Dict[str, Any]]:
        """What the bot sent (``send_msg`` and ``send_msg_on_event``): msgid, open_kfid, touser, msgtype, the
        type's object, ``on_event`` (the code's kind — welcome, pool, taken, end — or None), time."""
        with self.state.lock:
            return copy.deepcopy(self.state.sent)

    @property
    def messages(self) -> List[Dict[str, Any]]:
        """Every message and event ``sync_msg`` has (or had: 3 days later it stops returning them), in order."""
        with self.state.lock:
            return [copy.deepcopy(item.body) for item in self.state.inbox.items]

    def service_state(self, open_kfid: str, external_userid: str) -> Tuple[int, Optional[str]]:
        """The session's state (0–4) and its servicer (in state 3), as ``service_state/get`` has them.

        :raises WeComError: 95000/95004 the account, 40096 an unknown customer.
        """
        with self.state.lock:
            conversation = self.state.conversation(open_kfid, external_userid)
            return conversation.state, conversation.servicer

    @property
    def sessions(self) -> List[Dict[str, Any]]:
        """The sessions not ended (states 0–3), in the order first seen: open_kfid, external_userid,
        service_state and servicer (in state 3, else None)."""
        with self.state.lock:
            return [{"open_kfid": c.open_kfid, "external_userid": c.external_userid, "service_state": c.state,
                     "servicer": c.servicer} for c in self.state.board.all().values() if c.state != ENDED]

    @property
    def accounts(self) -> Dict[str, Dict[str, Any]]:
        """kf accounts: open_kfid → the ``account/list`` entry plus ``servicers`` (userid → receiving)."""
        with self.state.lock:
            directory = self.state.directory
            return {kfid: dict(account.listed(), servicers={
                userid: directory.members[userid].receiving for userid in account.servicers})
                for kfid, account in directory.accounts.items()}
