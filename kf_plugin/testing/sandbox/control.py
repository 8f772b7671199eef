"""The sandbox's control endpoints under ``/sandbox/``: driving a running sandbox by hand, over HTTP.

Each endpoint calls one method of the :class:`~kf_plugin.testing.sandbox.Sandbox` facade — the
same method a test calls — and answers JSON: the outcome with 200, or ``{"error": "..."}`` with
404 (an unknown user or agent, or path), 409 (WeChat's rules refuse: an offline agent, a user
in no session), 400 (a bad body or state name) or 502 (the bot did not answer a push). WeCom's
customer and servicers have theirs under ``/sandbox/wecom/`` (:mod:`.wecom.control`). Real
WeChat has no such paths; ``kf-plugin sandbox say|accept|close|customer-says|...`` are their client.
"""
from __future__ import annotations

import functools
import json
import logging
from contextlib import contextmanager
from typing import Any, Callable, Dict, Iterator, List, Optional, Protocol, Tuple

from flask import Blueprint, Response, request

from ..client import Answer
from .errors import ApiError
from .pushes import Bot, BotUnreachableError
from .refusals import Refused, json_body, text_field
from .seeding import AgentRoster, AgentSeed, agent_state, state_name
from .wecom import WeComSandbox
from .wecom.control import WECOM_ROUTES, WeComControlViews

__all__ = ["PREFIX", "ROUTES", "Refused", "control_blueprint", "state_view", "answer_view"]

PREFIX = "/sandbox"


class Sandbox(AgentRoster, Protocol):
    """What the endpoints drive: the :class:`~kf_plugin.testing.sandbox.Sandbox` facade's methods that tests
    call (see there for what each does and raises)."""

    appid: str
    wecom: WeComSandbox

    @property
    def bot(self) -> Optional[Bot]: ...
    @property
    def agents(self) -> Dict[str, dict]: ...
    @property
    def sessions(self) -> Dict[str, dict]: ...
    @property
    def wait_queue(self) -> List[dict]: ...
    def knows(self, openid: str) -> bool: ...
    def user_says(self, openid: str, text: str) -> Optional[Answer]: ...
    def user_event(self, openid: str, event: str, key: Optional[str] = None) -> Optional[Answer]: ...
    def accept(self, openid: str, kf_account: str) -> Optional[Answer]: ...
    def close(self, openid: str) -> Optional[Answer]: ...
    def switch(self, openid: str, to_kf_account: str) -> Optional[Answer]: ...
    def lapse(self, openid: str) -> None: ...
    def agent_says(self, openid: str, text: str) -> None: ...
    def set_online(self, kf_account: str, online: bool = True, status: int = 1) -> None: ...

log = logging.getLogger(__name__)

View = Callable[..., Dict[str, Any]]

#: (method, path below PREFIX, what it does), as listed in an unknown path's answer and in the docs.
ROUTES: List[Tuple[str, str, str]] = [
    ("GET", "/state", "agents, sessions, wait queue, the connected bot, WeCom's accounts"),
    ("POST", "/agents", "add an agent: {kf_account, state, nickname}"),
    ("PUT", "/agents/<kf_account>", "set an agent's state: {state: online|busy|offline}"),
    ("POST", "/users/<openid>/say", "the user writes: {text}"),
    ("POST", "/users/<openid>/event", "the user triggers an event: {event, key}"),
    ("POST", "/users/<openid>/accept", "an agent accepts the user: {kf_account} (default: the one online)"),
    ("POST", "/users/<openid>/close", "the serving agent closes the session"),
    ("POST", "/users/<openid>/switch", "the session moves to another agent: {kf_account}"),
    ("POST", "/users/<openid>/agent-says", "the serving agent writes: {text}"),
    ("POST", "/users/<openid>/lapse", "the session lapses (no event)"),
    *WECOM_ROUTES,
]


def _json(payload: Dict[str, Any], status: int = 200) -> Response:
    return Response(json.dumps(payload, ensure_ascii=False), status, content_type="application/json; charset=utf-8")


def _answering(view: View) -> Callable[..., Response]:
    """``view``'s dict as JSON, and any refusal as ``{"error": ...}`` with its status."""
    @functools.wraps(view)
    def run(**arguments: Any) -> Response:
        try:
            return _json(view(**arguments))
        except Refused as exc:
            return _json({"error": exc.message}, exc.status)
        except BotUnreachableError as exc:
            return _json({"error": str(exc)}, 502)
        except ApiError as exc:
            return _json({"error": f"WeChat refuses: {exc}"}, 409)
        except ValueError as exc:
            return _json({"error": str(exc)}, 400)
        except Exception:  # a sandbox bug: say so in the same shape, the traceback in the sandbox's log
            log.exception("sandbox failed to answer %s %s", request.method, request.path)
            return _json({"error": f"the sandbox failed on {request.method} {request.path}: see its log"}, 500)
    return run


def answer_view(answer: Optional[Answer]) -> Optional[Dict[str, Any]]:
    """The bot's answer as JSON: its HTTP status, reply type, text, transfer target and XML (or body)."""
    if answer is None:
        return None
    return {"status": answer.status, "message_type": answer.message_type, "content": answer.content,
            "kf_account": answer.kf_account, "xml": answer.xml if answer.status == 200 else answer.body}


def state_view(sandbox: Sandbox) -> Dict[str, Any]:
    """What ``GET /sandbox/state`` answers."""
    bot = sandbox.bot
    agents = [{"kf_account": name, "nickname": agent["kf_nick"], "state": state_name(agent["online"], agent["status"]),
               "sessions": agent["accepted_case"]} for name, agent in sandbox.agents.items()]
    sessions = [{"openid": openid, "kf_account": session["kf_account"], "since": session["createtime"]}
                for openid, session in sandbox.sessions.items()]
    wecom_sessions = sandbox.wecom.sessions
    wecom = [{"open_kfid": kfid, "name": account["name"], "servicers": account["servicers"],
              "sessions": [{key: session[key] for key in ("external_userid", "service_state", "servicer")}
                           for session in wecom_sessions if session["open_kfid"] == kfid]}
             for kfid, account in sandbox.wecom.accounts.items()]
    wecom_bot = sandbox.wecom.bot
    return {"appid": sandbox.appid,
            "bot": None if bot is None else {"url": bot.url, "safe_mode": bot.signer.cipher is not None},
            "agents": agents, "sessions": sessions, "wait_queue": sandbox.wait_queue, "wecom_accounts": wecom,
            "wecom_bot": None if wecom_bot is None else wecom_bot.url}


class ControlViews:
    """The endpoints' bodies over one sandbox; each returns the answer's JSON fields or raises."""

    def __init__(self, sandbox: Sandbox):
        self.sandbox = sandbox

    # -- agents ------------------------------------------------------------------------

    def state(self) -> Dict[str, Any]:
        return state_view(self.sandbox)

    def add_agent(self) -> Dict[str, Any]:
        seed = AgentSeed.of(json_body())
        try:
            seed.add_to(self.sandbox)
        except ApiError as exc:  # 65406 it exists; the others: a malformed account or nickname
            raise Refused(409 if exc.errcode == 65406 else 400, f"cannot add {seed.kf_account}: {exc}") from exc
        return {"agent": self._agent(seed.kf_account)}

    def set_agent(self, kf_account: str) -> Dict[str, Any]:
        online, status = agent_state(json_body().get("state"))
        with self._refusals(kf_account=kf_account):
            self.sandbox.set_online(kf_account, online, status)
        return {"agent": self._agent(kf_account)}

    def _agent(self, kf_account: str) -> Dict[str, Any]:
        return next(agent for agent in state_view(self.sandbox)["agents"] if agent["kf_account"] == kf_account)

    # -- the user ----------------------------------------------------------------------

    def say(self, openid: str) -> Dict[str, Any]:
        text = text_field(json_body(), "text")
        return self._outcome(openid, self.sandbox.user_says(openid, text))

    def event(self, openid: str) -> Dict[str, Any]:
        body = json_body()
        event, key = text_field(body, "event"), body.get("key")
        if key is not None and not isinstance(key, str):
            raise Refused(400, f"'key' must be a string, got {key!r}")
        return self._outcome(openid, self.sandbox.user_event(openid, event, key))

    # -- the agents' side of a session ---------------------------------------------------

    def accept(self, openid: str) -> Dict[str, Any]:
        kf_account = json_body().get("kf_account") or self._the_online_agent(openid)
        with self._refusals(openid, kf_account), _pushed("the session is open all the same"):
            answer = self.sandbox.accept(openid, kf_account)
        return self._outcome(openid, answer)

    def close(self, openid: str) -> Dict[str, Any]:
        serving = self._serving(openid)
        with _pushed("the session is closed all the same"):
            answer = self.sandbox.close(openid)
        return dict(self._outcome(openid, answer), closed_by=serving)

    def switch(self, openid: str) -> Dict[str, Any]:
        kf_account = text_field(json_body(), "kf_account")
        self._serving(openid)
        with self._refusals(openid, kf_account), _pushed("the session moved all the same"):
            answer = self.sandbox.switch(openid, kf_account)
        return self._outcome(openid, answer)

    def agent_says(self, openid: str) -> Dict[str, Any]:
        text = text_field(json_body(), "text")
        serving = self._serving(openid)
        self.sandbox.agent_says(openid, text)
        return dict(self._outcome(openid, None), written_by=serving)

    def lapse(self, openid: str) -> Dict[str, Any]:
        self._serving(openid)
        self.sandbox.lapse(openid)
        return self._outcome(openid, None)

    # -- helpers ------------------------------------------------------------------------

    def _outcome(self, openid: str, answer: Optional[Answer]) -> Dict[str, Any]:
        """Where the user stands now, and the bot's answer to the push (None: nothing was pushed)."""
        bot = self.sandbox.bot
        session = self.sandbox.sessions.get(openid)
        return {"openid": openid, "bot": None if bot is None else bot.url, "answer": answer_view(answer),
                "with_agent": None if session is None else session["kf_account"],
                "waiting": any(case["openid"] == openid for case in self.sandbox.wait_queue)}

    def _serving(self, openid: str) -> str:
        """The agent serving ``openid``.

        :raises Refused: 404 an unknown user, 409 a user in no session.
        """
        session = self.sandbox.sessions.get(openid)
        if session is not None:
            return str(session["kf_account"])
        if not self.sandbox.knows(openid):
            raise Refused(404, f"no user {openid!r}: nobody with that openid has written yet")
        raise Refused(409, f"{openid} is in no session with an agent")

    def _the_online_agent(self, openid: str) -> str:
        """The agent to accept ``openid`` when none is named: the only one online (busy ones do not count).

        :raises Refused: 409 none is online, 400 several are (name one).
        """
        online = [agent["kf_account"] for agent in state_view(self.sandbox)["agents"] if agent["state"] == "online"]
        if not online:
            raise Refused(409, f"no agent is online to accept {openid}: set one online first")
        if len(online) > 1:
            raise Refused(400, f"several agents are online ({', '.join(online)}): name the one accepting {openid}")
        return str(online[0])

    @contextmanager
    def _refusals(self, openid: Optional[str] = None, kf_account: Optional[str] = None) -> Iterator[None]:
        """WeChat's refusals about a user or an agent, as 404 or 409 naming them."""
        try:
            yield
        except ApiError as exc:
            raise self._refused(exc, openid, kf_account) from exc

    def _refused(self, exc: ApiError, openid: Optional[str], kf_account: Optional[str]) -> Refused:
        if exc.errcode == 65401:
            names = ", ".join(self.sandbox.agents) or "none"
            return Refused(404, f"no agent {kf_account!r} (the agents: {names})")
        if exc.errcode == 40003:
            return Refused(404, f"no user {openid!r}: nobody with that openid has written yet")
        reasons = {65415: f"{kf_account} is offline: set them online first",
                   65402: f"{kf_account} is bound to no WeChat user, so cannot go online",
                   65414: f"{openid} is served by another agent: switch the session instead",
                   43004: f"{openid} has unfollowed the account"}
        return Refused(409, reasons.get(exc.errcode, f"WeChat refuses: {exc}"))


@contextmanager
def _pushed(note: str) -> Iterator[None]:
    """A push the bot did not answer, as 502 saying that the sandbox's change stands."""
    try:
        yield
    except BotUnreachableError as exc:
        raise Refused(502, f"{exc} ({note})") from exc


def _unknown(rest: str) -> Response:
    listed = "; ".join(f"{method} {PREFIX}{path}" for method, path, _ in ROUTES)
    return _json({"error": f"no control endpoint {request.method} {PREFIX}/{rest} (the endpoints: {listed})"}, 404)


def control_blueprint(sandbox: Sandbox) -> Blueprint:
    """The ``/sandbox/...`` endpoints over ``sandbox``, to register on its Flask app."""
    views = ControlViews(sandbox)
    handlers: Dict[str, View] = {
        "/state": views.state, "/agents": views.add_agent, "/agents/<kf_account>": views.set_agent,
        "/users/<openid>/say": views.say, "/users/<openid>/event": views.event,
        "/users/<openid>/accept": views.accept, "/users/<openid>/close": views.close,
        "/users/<openid>/switch": views.switch, "/users/<openid>/agent-says": views.agent_says,
        "/users/<openid>/lapse": views.lapse, **WeComControlViews(sandbox.wecom).handlers()}
    blueprint = Blueprint("sandbox_control", __name__, url_prefix=PREFIX)
    for method, path, _ in ROUTES:
        view = handlers[path]
        blueprint.add_url_rule(path, view.__name__, _answering(view), methods=[method])
    blueprint.add_url_rule("/", "unknown-root", _unknown, defaults={"rest": ""}, methods=["GET", "POST", "PUT"])
    blueprint.add_url_rule("/<path:rest>", "unknown", _unknown, methods=["GET", "POST", "PUT", "DELETE", "PATCH"])
    return blueprint
