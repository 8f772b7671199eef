"""WeCom's control endpoints, under ``/sandbox/wecom/``: a 微信客服 customer and the servicers, driven by hand.

Each endpoint calls one method of :class:`~.facade.WeComSandbox` (``sandbox.wecom``) — the same method a test
calls — and answers where the customer's session stands after it: ``{"open_kfid", "external_userid", "bot",
"service_state", "servicer"}``, with the ``msgid`` of a message or the ``session_status_change`` ``event`` the
call made. A connected bot hears of it by a ``kf_msg_or_event`` callback, sent in the background: the answer
does not wait for the bot. Refusals are :class:`~..refusals.Refused`: 404 an unknown account, customer or
servicer, 409 WeCom's rules refuse (a servicer who is not receiving, a session no servicer serves), 400 a bad
body (or a ``menu_id`` in no menu sent to the customer). :mod:`..control` serves them beside the Official
Account's.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

from ..refusals import Refused, json_body, text_field
from .errors import WeComError
from .facade import WeComSandbox

__all__ = ["WECOM_ROUTES", "WeComControlViews"]

_CUSTOMER = "/wecom/<open_kfid>/customers/<external_userid>"

#: (method, path below /sandbox, what it does), as listed in an unknown path's answer and in the docs.
WECOM_ROUTES: List[Tuple[str, str, str]] = [
    ("POST", f"{_CUSTOMER}/say", "the 微信客服 customer writes: {text, menu_id}"),
    ("POST", f"{_CUSTOMER}/servicer-takes", "a servicer takes the customer: {servicer}"),
    ("POST", f"{_CUSTOMER}/servicer-ends", "the serving servicer ends the session"),
    ("POST", f"{_CUSTOMER}/servicer-says", "the serving servicer writes: {text}"),
]


class WeComControlViews:
    """The WeCom endpoints' bodies over one :class:`WeComSandbox`; each returns the answer's JSON fields or raises
    :class:`Refused` (or ``ValueError``, answered 400)."""

    def __init__(self, wecom: WeComSandbox):
        self.wecom = wecom

    def handlers(self) -> Dict[str, Callable[..., Dict[str, Any]]]:
        """Each path of :data:`WECOM_ROUTES` with its view."""
        views = [self.customer_says, self.servicer_takes, self.servicer_ends, self.servicer_says]
        return {path: view for (_, path, _), view in zip(WECOM_ROUTES, views)}

    def customer_says(self, open_kfid: str, external_userid: str) -> Dict[str, Any]:
        body = json_body()
        text, menu_id = text_field(body, "text"), body.get("menu_id")
        if menu_id is not None and (not isinstance(menu_id, str) or not menu_id):
            raise Refused(400, f"'menu_id' must be a non-empty string, got {menu_id!r}")
        with self._refusals(open_kfid, external_userid):
            msgid = self.wecom.customer_says(open_kfid, external_userid, text, menu_id)
        return dict(self._outcome(open_kfid, external_userid), msgid=msgid)

    def servicer_takes(self, open_kfid: str, external_userid: str) -> Dict[str, Any]:
        servicer = text_field(json_body(), "servicer")
        with self._refusals(open_kfid, external_userid, servicer, moving=True):
            item = self.wecom.servicer_takes(open_kfid, external_userid, servicer)
        return dict(self._outcome(open_kfid, external_userid), event=item["event"])

    def servicer_ends(self, open_kfid: str, external_userid: str) -> Dict[str, Any]:
        with self._refusals(open_kfid, external_userid, moving=True):
            item = self.wecom.servicer_ends(open_kfid, external_userid)
        return dict(self._outcome(open_kfid, external_userid), event=item["event"],
                    ended_by=item["event"]["old_servicer_userid"])

    def servicer_says(self, open_kfid: str, external_userid: str) -> Dict[str, Any]:
        text = text_field(json_body(), "text")
        with self._refusals(open_kfid, external_userid, moving=True):
            msgid = self.wecom.servicer_says(open_kfid, external_userid, text)
        outcome = self._outcome(open_kfid, external_userid)
        return dict(outcome, msgid=msgid, written_by=outcome["servicer"])

    # -- helpers ------------------------------------------------------------------------

    def _outcome(self, open_kfid: str, external_userid: str) -> Dict[str, Any]:
        """Where the session stands now, and the bot told of it by a callback (None: no bot is connected)."""
        state, servicer = self.wecom.service_state(open_kfid, external_userid)
        bot = self.wecom.bot
        return {"open_kfid": open_kfid, "external_userid": external_userid, "bot": None if bot is None else bot.url,
                "service_state": state, "servicer": servicer}

    @contextmanager
    def _refusals(self, open_kfid: str, external_userid: str, servicer: Optional[str] = None, *,
                  moving: bool = False) -> Iterator[None]:
        """WeCom's refusals as 404 or 409 naming the account, customer or servicer; with ``moving``, a session the
        call cannot move (the facade's ``ValueError``) as 409."""
        try:
            yield
        except WeComError as exc:
            raise self._refused(exc, open_kfid, external_userid, servicer) from exc
        except ValueError as exc:
            if moving:
                raise Refused(409, str(exc)) from exc
            raise

    def _refused(self, exc: WeComError, open_kfid: str, external_userid: str, servicer: Optional[str]) -> Refused:
        if exc.errcode in (95000, 95004):
            names = ", ".join(self.wecom.accounts) or "none"
            return Refused(404, f"no 微信客服 account {open_kfid!r} (the accounts: {names})")
        if exc.errcode == 40096:
            return Refused(404, f"no customer {external_userid!r}: nobody with that external_userid has written yet")
        if exc.errcode == 95014 and servicer is not None:
            return self._cannot_take(open_kfid, servicer)
        return Refused(409, f"WeCom refuses: {exc}")

    def _cannot_take(self, open_kfid: str, servicer: str) -> Refused:
        """Why ``servicer`` cannot take a customer of ``open_kfid`` (WeCom's 95014)."""
        servicers = self.wecom.accounts.get(open_kfid, {}).get("servicers", {})
        if servicer not in servicers:
            names = ", ".join(servicers) or "none"
            return Refused(404, f"no servicer {servicer!r} of {open_kfid} (its servicers: {names})")
        if not servicers[servicer]:
            return Refused(409, f"{servicer} has stopped receiving customers")
        return Refused(409, f"{servicer} has not activated WeCom, so cannot take customers")
