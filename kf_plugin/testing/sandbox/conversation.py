"""WeChat between a user, the bot and the agents: what reaches the bot, and what a transfer or an agent changes.

The rules played (WeChat's forwarding docs): a user's text goes to the bot unless
the user is in a session with an agent, where the agent receives it; a transfer
answer queues the user, or opens the session of the agent it names when that agent
is online; an agent accepting, closing or switching a session pushes
``kf_create_session`` / ``kf_close_session`` / ``kf_switch_session``; a session that
lapses (30 minutes open without a close) ends with no event. Events (menu clicks
and the like) always reach the bot.

State changes happen under the state's lock; pushes go out after it is released,
so a bot that calls the API while handling a push is answered.
"""
from __future__ import annotations

import threading
from typing import Callable, List, Optional

from ..client import Answer, message_xml
from .errors import ApiError
from .pushes import Background, Bot, BotUnreachableError, Push
from .sessions import SessionEvent
from .state import SandboxState

__all__ = ["Conversations", "EVENT_ACTIONS", "TRANSFER"]

TRANSFER = "transfer_customer_service"

#: What an event counts as in the 48-hour window (lowercase event names); the others grant nothing.
EVENT_ACTIONS = {"subscribe": "follow", "scan": "scan", "click": "click",
                 "scancode_push": "click", "scancode_waitmsg": "click"}


class Conversations:
    """WeChat's side of the conversation over :class:`SandboxState`; pushes go to the connected bot, if any."""

    def __init__(self, state: SandboxState):
        self.state = state
        self._bot: Optional[Bot] = None
        self._log_lock = threading.Lock()
        self._pushes: List[Push] = []
        self._background = Background()

    # -- the bot ----------------------------------------------------------------------

    @property
    def bot(self) -> Optional[Bot]:
        return self._bot

    def connect(self, bot: Optional[Bot]) -> None:
        """Push to ``bot`` from now on (None: to nobody)."""
        self._bot = bot

    @property
    def pushes(self) -> List[Push]:
        with self._log_lock:
            return list(self._pushes)

    def wait(self, timeout: float) -> None:
        """:raises TimeoutError: background pushes still running after ``timeout`` seconds."""
        if not self._background.wait(timeout):
            raise TimeoutError(f"the sandbox's background pushes did not finish within {timeout} s")

    def announced(self, events: List[SessionEvent]) -> Optional[Callable[[], None]]:
        """The server's hook: push the events an API call caused, in the background, once it is answered."""
        bot = self._bot
        if bot is None:
            return None
        self._background.reserve()
        return lambda: self._background.submit(lambda: self._push_events(bot, events))

    # -- the user ---------------------------------------------------------------------

    def user_says(self, openid: str, text: str) -> Optional[Answer]:
        """:raises ValueError: empty openid or text. :raises BotUnreachableError: see :meth:`_exchange`."""
        if not isinstance(text, str) or not text:
            raise ValueError("text must be a non-empty string")
        with self.state.lock:
            if self.state.user_says(openid, text) is not None:
                return None  # in a session: the agent received it
            bot, now = self._bot, self.state.now()
        if bot is None:
            return None
        return self._exchange(bot, openid, message_xml(text=text, sender=openid, account=bot.account_id,
                                                       create_time=int(now)))

    def user_event(self, openid: str, event: str, key: Optional[str]) -> Optional[Answer]:
        """:raises ValueError: empty openid or event, or a kf_* event (the agent side's).
        :raises BotUnreachableError: see :meth:`_exchange`."""
        if not isinstance(event, str) or not event:
            raise ValueError("event must be an event name such as 'CLICK' or 'subscribe'")
        if event.lower().startswith("kf_"):
            raise ValueError(f"{event} comes from the agent side: use accept, close or switch")
        if not isinstance(openid, str) or not openid:
            raise ValueError("openid must be a non-empty string")
        with self.state.lock:
            self._interact(openid, event.lower())
            bot, now = self._bot, self.state.now()
        if bot is None:
            return None
        return self._exchange(bot, openid, message_xml(event=event, key=key, sender=openid,
                                                       account=bot.account_id, create_time=int(now)))

    def _interact(self, openid: str, event: str) -> None:
        if event == "unsubscribe":
            if self.state.window.knows(openid):
                self.state.unsubscribe(openid)
        elif event in EVENT_ACTIONS:
            self.state.window.interact(openid, EVENT_ACTIONS[event], self.state.now())

    def _exchange(self, bot: Bot, openid: str, xml: str) -> Answer:
        """Push ``xml``; a transfer answer queues the user or opens the named agent's session (and pushes
        its event).

        :raises BotUnreachableError: the bot did not answer (the push) or the session event.
        """
        answer = self._push(bot, openid, xml)
        if answer.status != 200 or answer.message_type != TRANSFER:
            return answer
        with self.state.lock:
            event = self.state.transfer(openid, answer.kf_account)
        if event is not None:
            self._push(bot, openid, self._event_xml(bot, event))
        return answer

    # -- the agents -------------------------------------------------------------------

    def accept(self, openid: str, kf_account: str) -> Optional[Answer]:
        """:raises ApiError: as ``kfsession/create``. :raises BotUnreachableError: the bot did not answer."""
        with self.state.lock:
            event = self.state.create_session(kf_account, openid)
        return self._announce(event)

    def close(self, openid: str) -> Optional[Answer]:
        """:raises ApiError: 65413 no session. :raises BotUnreachableError: the bot did not answer."""
        with self.state.lock:
            session = self.state.sessions.serving(openid)
            if session is None:
                raise ApiError(65413)
            event = self.state.close_session(session.kf_account, openid)
        return self._announce(event)

    def switch(self, openid: str, to_kf_account: str) -> Optional[Answer]:
        """:raises ApiError: 65413 no session; 65401, 65402, 65415 for ``to_kf_account``.
        :raises ValueError: it serves the user already. :raises BotUnreachableError: the bot did not answer."""
        with self.state.lock:
            event = self.state.switch_session(openid, to_kf_account)
        return self._announce(event)

    def agent_says(self, openid: str, text: str) -> None:
        """:raises ApiError: 65413 no session. :raises ValueError: empty text."""
        if not isinstance(text, str) or not text:
            raise ValueError("text must be a non-empty string")
        with self.state.lock:
            self.state.agent_says(openid, text)

    def lapse(self, openid: str) -> None:
        """:raises ApiError: 65413 no session."""
        with self.state.lock:
            self.state.sessions.lapse(openid)

    # -- pushing ----------------------------------------------------------------------

    def _announce(self, event: Optional[SessionEvent]) -> Optional[Answer]:
        bot = self._bot
        if bot is None or event is None:
            return None
        return self._push(bot, event.openid, self._event_xml(bot, event))

    def _push_events(self, bot: Bot, events: List[SessionEvent]) -> None:
        for event in events:
            try:
                self._push(bot, event.openid, self._event_xml(bot, event))
            except BotUnreachableError:
                pass  # kept in the push log with its error; nobody is waiting to be told

    def _event_xml(self, bot: Bot, event: SessionEvent) -> str:
        return message_xml(event=event.event, sender=event.openid, account=bot.account_id,
                           create_time=int(self.state.now()), extra=event.fields())

    def _push(self, bot: Bot, openid: str, xml: str) -> Answer:
        """:raises BotUnreachableError: logged as a push with its error, then raised."""
        at = self.state.now()
        try:
            answer = bot.deliver(xml)
        except BotUnreachableError as exc:
            self._log(Push(openid, xml, at, error=str(exc)))
            raise
        self._log(Push(openid, xml, at, answer=answer))
        return answer

    def _log(self, push: Push) -> None:
        with self._log_lock:
            self._pushes.append(push)
