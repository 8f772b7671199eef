"""The WeChat API paths the sandbox answers, each mapped onto :class:`SandboxState`.

A handler gets the state (locked by the caller) and the request, and returns the
answer's fields besides ``errcode``/``errmsg`` (None for none), or raises
:class:`ApiError`. Token and kf-enabled checks happen before, from the
:class:`Endpoint` flags. A call that opens or closes a session announces the
event WeChat pushes for it (:meth:`SandboxState.announce`).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Mapping, Optional

from .errors import ApiError
from .messages import parse_custom_message
from .state import SandboxState

__all__ = ["ApiRequest", "Endpoint", "ENDPOINTS"]


@dataclass(frozen=True)
class ApiRequest:
    method: str
    query: Mapping[str, str]
    raw_body: bytes = b""
    files: Mapping[str, bytes] = field(default_factory=dict)

    def json(self) -> Dict[str, Any]:
        """The JSON object in the body.

        :raises ApiError: 44002 empty body, 47001 not UTF-8 JSON or not an object.
        """
        if not self.raw_body.strip():
            raise ApiError(44002)
        try:
            data = json.loads(self.raw_body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            raise ApiError(47001) from None
        if not isinstance(data, dict):
            raise ApiError(47001)
        return data


Handler = Callable[[SandboxState, ApiRequest], Optional[Dict[str, Any]]]


@dataclass(frozen=True)
class Endpoint:
    path: str
    handle: Handler
    needs_token: bool = True
    needs_kf: bool = False


ENDPOINTS: Dict[str, Endpoint] = {}


def _endpoint(path: str, *, needs_token: bool = True, needs_kf: bool = False) -> Callable[[Handler], Handler]:
    def register(handle: Handler) -> Handler:
        ENDPOINTS[path] = Endpoint(path, handle, needs_token, needs_kf)
        return handle
    return register


# -- access token -------------------------------------------------------------

@_endpoint("/cgi-bin/token", needs_token=False)
def fetch_token(state: SandboxState, request: ApiRequest) -> dict:
    query = request.query
    state.tokens.check_credentials(query.get("grant_type"), query.get("appid"), query.get("secret"))
    token, expires_in = state.tokens.fetch_classic()
    return {"access_token": token, "expires_in": expires_in}


@_endpoint("/cgi-bin/stable_token", needs_token=False)
def fetch_stable_token(state: SandboxState, request: ApiRequest) -> dict:
    body = request.json()
    force_refresh = body.get("force_refresh", False)
    if not isinstance(force_refresh, bool):
        raise ApiError(47001, "force_refresh must be true or false")
    state.tokens.check_credentials(body.get("grant_type"), body.get("appid"), body.get("secret"))
    token, expires_in = state.tokens.fetch_stable(force_refresh)
    return {"access_token": token, "expires_in": expires_in}


# -- kf accounts ----------------------------------------------------------------

@_endpoint("/customservice/kfaccount/add", needs_kf=True)
def add_account(state: SandboxState, request: ApiRequest) -> None:
    body = request.json()  # a "password" key (old docs) is accepted and ignored
    state.accounts.add(body.get("kf_account"), body.get("nickname"))


@_endpoint("/customservice/kfaccount/update", needs_kf=True)
def update_account(state: SandboxState, request: ApiRequest) -> None:
    body = request.json()
    state.accounts.update(body.get("kf_account"), body.get("nickname"))


@_endpoint("/customservice/kfaccount/del", needs_kf=True)
def delete_account(state: SandboxState, request: ApiRequest) -> None:
    # Old docs and SDKs (wechatpy 1.8) call it as GET with ?kf_account=; current docs POST JSON.
    if request.raw_body.strip():
        kf_account = request.json().get("kf_account")
    else:
        kf_account = request.query.get("kf_account")
    state.delete_account(kf_account)


@_endpoint("/customservice/kfaccount/uploadheadimg", needs_kf=True)
def upload_head_image(state: SandboxState, request: ApiRequest) -> None:
    state.accounts.set_headimg(request.query.get("kf_account"), request.files.get("media"))


@_endpoint("/customservice/kfaccount/inviteworker", needs_kf=True)
def invite_worker(state: SandboxState, request: ApiRequest) -> None:
    body = request.json()
    state.accounts.invite(body.get("kf_account"), body.get("invite_wx"), state.now())


@_endpoint("/cgi-bin/customservice/getkflist", needs_kf=True)
def list_accounts(state: SandboxState, request: ApiRequest) -> dict:
    return {"kf_list": state.accounts.listed(state.now())}


@_endpoint("/cgi-bin/customservice/getonlinekflist", needs_kf=True)
def list_online_accounts(state: SandboxState, request: ApiRequest) -> dict:
    return {"kf_online_list": state.online_list()}


# -- sessions -------------------------------------------------------------------

@_endpoint("/customservice/kfsession/create", needs_kf=True)
def create_session(state: SandboxState, request: ApiRequest) -> None:
    body = request.json()
    event = state.create_session(body.get("kf_account"), body.get("openid"))
    if event is not None:
        state.announce(event)


@_endpoint("/customservice/kfsession/close", needs_kf=True)
def close_session(state: SandboxState, request: ApiRequest) -> None:
    body = request.json()
    state.announce(state.close_session(body.get("kf_account"), body.get("openid")))


@_endpoint("/customservice/kfsession/getsession", needs_kf=True)
def get_session(state: SandboxState, request: ApiRequest) -> dict:
    return state.get_session(request.query.get("openid"))


@_endpoint("/customservice/kfsession/getsessionlist", needs_kf=True)
def list_sessions(state: SandboxState, request: ApiRequest) -> dict:
    return {"sessionlist": state.session_list(request.query.get("kf_account"))}


@_endpoint("/customservice/kfsession/getwaitcase", needs_kf=True)
def list_wait_cases(state: SandboxState, request: ApiRequest) -> dict:
    count, listed = state.sessions.wait_cases()
    return {"count": count, "waitcaselist": listed}


@_endpoint("/customservice/msgrecord/getmsglist", needs_kf=True)
def list_records(state: SandboxState, request: ApiRequest) -> dict:
    return state.records.page(request.json())


# -- custom messages --------------------------------------------------------------

@_endpoint("/cgi-bin/message/custom/send")
def send_custom_message(state: SandboxState, request: ApiRequest) -> None:
    state.send(parse_custom_message(request.json()))


@_endpoint("/cgi-bin/message/custom/typing")
def send_typing(state: SandboxState, request: ApiRequest) -> None:
    body = request.json()
    state.typing(body.get("touser"), body.get("command"))
