"""The :class:`Sandbox` facade: control, inspection and serving of the WeChat API stand-in."""
from __future__ import annotations

import copy
import dataclasses
import time
from typing import Callable, Dict, List, Mapping, Optional

from flask import Flask

from ..client import Answer
from .calls import Call, CallLog
from .control import control_blueprint
from .conversation import Conversations
from .errors import ApiError
from .faults import Faults
from .pushes import DEFAULT_TIMEOUT, Bot, Push
from .records import RECEIVED
from .server import SandboxServer, create_app, run_forever
from .state import SandboxState
from .wecom import DEFAULT_CORP_SECRET, DEFAULT_CORPID, WeComSandbox
from .window import Quota

__all__ = ["Sandbox"]


class Sandbox:
    """A stand-in for ``https://api.weixin.qq.com`` that answers as WeChat does.

    ::

        sandbox = Sandbox(clock=clock)
        sandbox.add_agent("kf1@test", "Alice", wx="alice_wx", online=True)
        sandbox.interact("oUser1", "message")
        with sandbox.serve() as server:
            client = WeChatClient(sandbox.appid, sandbox.secret)
            client._http = server.session()  # wechatpy builds some URLs absolutely
            client.message.send_text("oUser1", "hi")
        assert sandbox.sent[0]["text"] == {"content": "hi"}

    With :meth:`connect_bot` it also plays WeChat's side of the conversation:
    :meth:`user_says` pushes to the bot and follows its transfer, :meth:`accept`,
    :meth:`close`, :meth:`switch` push the ``kf_*`` events, and so do the bot's own
    ``kfsession/create`` and ``kfsession/close`` calls.

    ``clock`` (unix seconds) drives every lifetime and limit: tokens, invitations,
    the 48-hour window, typing, daily limits (days start at Beijing midnight), and
    the time of the pushes to a bot.
    ``quotas`` overrides rows of the window's table: ``{"message": (20, 172800)}``,
    each (sends or None for unlimited, seconds). ``kf_enabled=False`` makes the
    customer-service API answer 65400. ``token_daily_limit`` is 2000 as for a real
    account (200 for WeChat's test accounts).

    Its server also answers the control endpoints under ``/sandbox/`` (see :mod:`.control`): the
    methods below over HTTP, for ``kf-plugin sandbox say|accept|close|...`` and any other client.

    :attr:`wecom` plays WeCom's 微信客服 (``/cgi-bin/gettoken`` and ``/cgi-bin/kf/...``) on the same
    server and clock, for the corp ``corpid`` with the app secret ``corp_secret`` (its token has the
    same daily limit): see :class:`~kf_plugin.testing.sandbox.wecom.WeComSandbox`.

    Every method is thread-safe. Control methods apply WeChat's rules and raise
    :class:`~kf_plugin.testing.sandbox.errors.ApiError` (a ``ValueError`` carrying the errcode
    the API would answer) when one refuses, or ``ValueError`` for a call the real
    world cannot produce.

    :raises ValueError: ``quotas`` names an unknown action or has a bad row.
    """

    def __init__(self, appid: str = "wxsandbox0000000", secret: str = "sandbox-secret",
                 clock: Callable[[], float] = time.time, quotas: Optional[Mapping[str, Quota]] = None, *,
                 kf_enabled: bool = True, token_daily_limit: int = 2000, corpid: str = DEFAULT_CORPID,
                 corp_secret: str = DEFAULT_CORP_SECRET):
        self.appid = appid
        self.secret = secret
        self.clock = clock
        self.state = SandboxState(appid, secret, clock, quotas, kf_enabled, token_daily_limit)
        self.faults = Faults()
        self._calls = CallLog()
        self._conversations = Conversations(self.state)
        self.wecom = WeComSandbox(clock, corpid, corp_secret, token_daily_limit)
        self.app: Flask = create_app(self.state, self.faults, self._calls, self._conversations.announced,
                                     siblings=[self.wecom.api])
        self.app.register_blueprint(control_blueprint(self))  # /sandbox/...: driving it by hand over HTTP

    def __repr__(self) -> str:
        return f"<Sandbox appid={self.appid!r}>"

    # -- serving ------------------------------------------------------------------

    def serve(self, host: str = "127.0.0.1", port: int = 0) -> SandboxServer:
        """Start serving in a daemon thread; ``port=0`` picks a free port (see ``server.url``).

        :raises OSError: the address cannot be bound.
        """
        return SandboxServer(self.app, host, port)

    def run(self, host: str = "127.0.0.1", port: int = 8081) -> None:
        """Serve in this thread until Ctrl-C (for ``kf-plugin sandbox``).

        :raises OSError: the address cannot be bound.
        """
        run_forever(self.app, host, port)

    # -- control ------------------------------------------------------------------

    @property
    def kf_enabled(self) -> bool:
        return self.state.kf_enabled

    @kf_enabled.setter
    def kf_enabled(self, enabled: bool) -> None:
        with self.state.lock:
            self.state.kf_enabled = enabled

    def add_agent(self, kf_account: str, nickname: str, wx: Optional[str] = None, online: bool = False,
                  status: int = 1) -> None:
        """Create a kf account, bound to WeChat id ``wx`` (no invitation needed) and online if asked.

        Nothing is created when any step is refused.

        :raises ApiError: the errcode ``kfaccount/add`` would answer (65403–65406),
            65409/65410 for ``wx``, 65402 for ``online`` without ``wx``.
        """
        with self.state.lock:
            if online and wx is None:
                raise ApiError(65402)
            self.state.accounts.add(kf_account, nickname)
            try:
                if wx is not None:
                    self.state.accounts.bind(kf_account, wx)
                if online:
                    self.state.accounts.set_online(kf_account, True, status)
            except ValueError:
                self.state.accounts.delete(kf_account)
                raise

    def set_online(self, kf_account: str, online: bool = True, status: int = 1) -> None:
        """The agent goes online (``status`` 1; legacy 2, 3) or offline; open sessions stay open.

        :raises ApiError: 65401 unknown account, 65402 going online while unbound.
        """
        with self.state.lock:
            self.state.accounts.set_online(kf_account, online, status)

    def interact(self, openid: str, action: str, at: Optional[float] = None) -> None:
        """The user acts (``message``, ``click``, ``follow``, ``scan``, ``payment``) at ``at`` (default now).

        Grants sends by the quota table, counts as an interaction for typing, and marks
        the user as following.

        :raises ValueError: unknown action or empty openid.
        """
        with self.state.lock:
            self.state.window.interact(openid, action, self.clock() if at is None else at)

    def knows(self, openid: str) -> bool:
        """Whether the user ever interacted (wrote, clicked, followed ...)."""
        with self.state.lock:
            return self.state.window.knows(openid)

    def unsubscribe(self, openid: str) -> None:
        """The user unfollows: grants vanish, the session and waiting place end.

        :raises ValueError: the user never interacted.
        """
        with self.state.lock:
            self.state.unsubscribe(openid)

    def enqueue(self, openid: str) -> None:
        """The user joins the wait queue (``getwaitcase``); again: same place, newer ``latest_time``.

        :raises ValueError: the user never interacted, unfollowed, or is in a session.
        """
        with self.state.lock:
            self.state.enqueue(openid)

    def accept_invite(self, kf_account: str) -> None:
        """The invited WeChat user accepts: the account becomes bound to them.

        :raises ApiError: 65401 unknown account, 65410 the user would have 6 accounts.
        :raises ValueError: no waiting invitation (none, rejected or expired).
        """
        with self.state.lock:
            self.state.accounts.answer_invitation(kf_account, True, self.clock())

    def reject_invite(self, kf_account: str) -> None:
        """The invited WeChat user rejects: ``invite_status`` becomes ``rejected``.

        :raises ApiError: 65401 unknown account.
        :raises ValueError: no waiting invitation.
        """
        with self.state.lock:
            self.state.accounts.answer_invitation(kf_account, False, self.clock())

    def add_record(self, openid: str, text: str, opercode: int = RECEIVED, worker: str = "",
                   at: Optional[float] = None) -> int:
        """Add a message record (2003 received from the user, 2002 sent by ``worker``); its msgid."""
        with self.state.lock:
            return self.state.records.add(openid, text, opercode, worker, self.clock() if at is None else at).msgid

    def invalidate_tokens(self) -> None:
        """Every token issued so far answers 40001 from now on (as after an AppSecret reset)."""
        with self.state.lock:
            self.state.tokens.invalidate_all()

    def clear_calls(self) -> None:
        """Forget the calls received so far."""
        self._calls.clear()

    # -- WeChat's side of the conversation ------------------------------------------------

    def connect_bot(self, url: str, token: str, *, encoding_aes_key: Optional[str] = None,
                    account_id: str = "gh_sandbox", timeout: float = DEFAULT_TIMEOUT) -> None:
        """Push to the bot at ``url`` from now on, as WeChat does: signed with ``token``, encrypted when
        ``encoding_aes_key`` is given (safe mode, for the sandbox's appid), from ``account_id``.

        Each push waits ``timeout`` seconds for the answer and is sent once. Its
        ``CreateTime`` and signature timestamp are the sandbox's clock. Without a
        connected bot, :meth:`user_says` and the agent-side methods change the
        sandbox's state only. Connecting again replaces the bot.

        :raises ValueError: a URL that is not http(s), an empty token or account id, a bad timeout.
        :raises ConfigError: an EncodingAESKey that is not 43 letters and digits.
        """
        self._conversations.connect(Bot(url, token, encoding_aes_key, self.appid, account_id, timeout, self.clock))

    @property
    def bot(self) -> Optional[Bot]:
        """The connected bot (``url``, ``account_id``, ``signer``), None without one."""
        return self._conversations.bot

    def disconnect_bot(self) -> None:
        """Push to nobody from now on."""
        self._conversations.connect(None)

    def user_says(self, openid: str, text: str) -> Optional[Answer]:
        """The user sends ``text``: an interaction (the ``message`` row of the 48-hour window), then:

        - in a session with an agent: the agent receives it (a record, opercode 2003), the
          bot does not; None.
        - otherwise (with the bot, or waiting in the queue): pushed to the bot, whose
          answer is returned. A ``transfer_customer_service`` answer puts the user in the
          wait queue, or, when it names an agent who is online, opens that agent's session
          and pushes ``kf_create_session``. Without a connected bot: None.

        :raises ValueError: empty openid or text.
        :raises BotUnreachableError: the bot did not answer within the timeout (it names the URL).
        """
        return self._conversations.user_says(openid, text)

    def user_event(self, openid: str, event: str, key: Optional[str] = None) -> Optional[Answer]:
        """The user triggers ``event`` (``CLICK`` with the menu ``key``, ``subscribe``, ``SCAN``, ...), pushed to
        the bot even during a session; the bot's answer (None without a bot), a transfer handled as by
        :meth:`user_says`.

        Clicks (also ``scancode_push``/``scancode_waitmsg``), follows and scans count in
        the 48-hour window; ``unsubscribe`` unfollows; other events grant nothing.

        :raises ValueError: empty openid or event, or a ``kf_*`` event (use :meth:`accept` and the like).
        :raises BotUnreachableError: the bot did not answer within the timeout.
        """
        return self._conversations.user_event(openid, event, key)

    def accept(self, openid: str, kf_account: str) -> Optional[Answer]:
        """Agent ``kf_account`` accepts the user (out of the wait queue, or from the console), by the rules of
        ``kfsession/create``, and WeChat pushes ``kf_create_session``; the bot's answer to it.

        Accepting a user the agent serves already changes nothing and pushes nothing (None).

        :raises ApiError: 65401 unknown account, 65402 unbound, 65415 offline, 40003 the user never
            interacted, 43004 unfollowed, 65414 another agent serves the user.
        :raises BotUnreachableError: the bot did not answer (the session is open all the same).
        """
        return self._conversations.accept(openid, kf_account)

    def close(self, openid: str) -> Optional[Answer]:
        """The serving agent closes the user's session; WeChat pushes ``kf_close_session``.

        :raises ApiError: 65413 the user has no session.
        :raises BotUnreachableError: the bot did not answer (the session is closed all the same).
        """
        return self._conversations.close(openid)

    def switch(self, openid: str, to_kf_account: str) -> Optional[Answer]:
        """The session moves to ``to_kf_account`` (its ``createtime`` now); WeChat pushes ``kf_switch_session``
        with ``FromKfAccount`` and ``ToKfAccount``.

        :raises ApiError: 65413 the user has no session; 65401 unknown, 65402 unbound, 65415 offline target.
        :raises ValueError: ``to_kf_account`` serves the user already.
        :raises BotUnreachableError: the bot did not answer (the session moved all the same).
        """
        return self._conversations.switch(openid, to_kf_account)

    def agent_says(self, openid: str, text: str) -> None:
        """The serving agent writes ``text`` to the user from the console: a record (opercode 2002, its worker).

        :raises ApiError: 65413 the user has no session.
        :raises ValueError: empty text.
        """
        self._conversations.agent_says(openid, text)

    def lapse(self, openid: str) -> None:
        """The user's session lapses, as after 30 minutes open without a close: it ends with no event, and the
        user's next message goes to the bot again.

        :raises ApiError: 65413 the user has no session.
        """
        self._conversations.lapse(openid)

    def wait_for_pushes(self, timeout: float = 5.0) -> None:
        """Wait until the pushes sent in the background have been answered: the ``kf_*`` events WeChat pushes
        after the bot's own ``kfsession/create`` and ``kfsession/close`` calls.

        :raises TimeoutError: some are still under way after ``timeout`` seconds.
        """
        self._conversations.wait(timeout)

    @property
    def pushes(self) -> List[Push]:
        """Every push sent to a bot, in the order sent: openid, xml, at, and the answer or the error."""
        return self._conversations.pushes

    # -- inspection (copies: they never change under the caller) -------------------------

    @property
    def calls(self) -> List[Call]:
        """Every request received, oldest first."""
        return self._calls.snapshot()

    def calls_to(self, path: str) -> List[Call]:
        """The requests received for ``path`` (e.g. ``"/cgi-bin/message/custom/send"``)."""
        return self._calls.snapshot("/" + path.lstrip("/"))

    @property
    def sent(self) -> List[dict]:
        """Custom messages delivered: touser, msgtype, the type's object, kf_account (or None), time."""
        with self.state.lock:
            return copy.deepcopy(self.state.sent)

    @property
    def sessions(self) -> Dict[str, dict]:
        """Open sessions: openid → {kf_account, createtime}."""
        with self.state.lock:
            return self.state.sessions_view()

    @property
    def agents(self) -> Dict[str, dict]:
        """kf accounts: kf_account → the ``getkflist`` entry plus online, status, accepted_case."""
        with self.state.lock:
            return self.state.agents_view()

    @property
    def wait_queue(self) -> List[dict]:
        """Every waiting user, oldest first: {latest_time, openid} (unlike the API, not cut at 100)."""
        with self.state.lock:
            return self.state.sessions.waiting()

    @property
    def records(self) -> List[dict]:
        """Every message record with its msgid, in id order."""
        with self.state.lock:
            return [dataclasses.asdict(record) for record in self.state.records]
