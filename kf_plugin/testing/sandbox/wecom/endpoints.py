"""The WeCom API paths the sandbox answers (``/cgi-bin/gettoken`` and ``/cgi-bin/kf/...``), each mapped onto
:class:`~.state.WeComState`.

A handler gets the state (locked by the caller) and the request, and returns the answer's
fields besides ``errcode``/``errmsg``, or raises :class:`~.errors.WeComError`. The token
check, and 95017 for the kf paths while the API is switched off, happen before.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Callable, Dict, Optional

from ..endpoints import ApiRequest
from .errors import INVALID_PARAMETER, WeComError
from .messages import parse_outgoing
from .state import WeComState
from .stats import corp_statistic, servicer_statistic

__all__ = ["WECOM_ENDPOINTS", "WeComEndpoint", "json_body"]

Handler = Callable[[WeComState, ApiRequest], Optional[Dict[str, Any]]]


@dataclass(frozen=True)
class WeComEndpoint:
    path: str
    handle: Handler
    needs_token: bool = True


WECOM_ENDPOINTS: Dict[str, WeComEndpoint] = {}


def _endpoint(path: str, *, needs_token: bool = True) -> Callable[[Handler], Handler]:
    def register(handle: Handler) -> Handler:
        WECOM_ENDPOINTS[path] = WeComEndpoint(path, handle, needs_token)
        return handle
    return register


def json_body(request: ApiRequest, optional: bool = False) -> Dict[str, Any]:
    """The JSON object in the body (``{}`` for an empty body when ``optional``).

    :raises WeComError: 40058 an empty body (unless optional), or one that is not a UTF-8 JSON object.
    """
    if not request.raw_body.strip():
        if optional:
            return {}
        raise WeComError(INVALID_PARAMETER, "the body must be a JSON object")
    try:
        data = json.loads(request.raw_body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise WeComError(INVALID_PARAMETER, "Warning: wrong json format.") from None
    if not isinstance(data, dict):
        raise WeComError(INVALID_PARAMETER, "the body must be a JSON object")
    return data


# -- access token -------------------------------------------------------------------------

@_endpoint("/cgi-bin/gettoken", needs_token=False)
def get_token(state: WeComState, request: ApiRequest) -> dict:
    state.tokens.check_credentials(request.query.get("corpid"), request.query.get("corpsecret"))
    token, expires_in = state.tokens.fetch()
    return {"access_token": token, "expires_in": expires_in}


# -- accounts ---------------------------------------------------------------------------------

@_endpoint("/cgi-bin/kf/account/add")
def add_account(state: WeComState, request: ApiRequest) -> dict:
    body = json_body(request)
    return {"open_kfid": state.directory.add_account(body.get("name"), body.get("media_id")).open_kfid}


@_endpoint("/cgi-bin/kf/account/del")
def delete_account(state: WeComState, request: ApiRequest) -> None:
    state.delete_account(json_body(request).get("open_kfid"))


@_endpoint("/cgi-bin/kf/account/update")
def update_account(state: WeComState, request: ApiRequest) -> None:
    body = json_body(request)
    state.directory.update_account(body.get("open_kfid"), body.get("name"), body.get("media_id"))


@_endpoint("/cgi-bin/kf/account/list")
def list_accounts(state: WeComState, request: ApiRequest) -> dict:
    body = json_body(request, optional=True)  # older SDKs call it as a GET without a body
    return {"account_list": state.directory.listed(body.get("offset", 0), body.get("limit", 100))}


@_endpoint("/cgi-bin/kf/add_contact_way")
def add_contact_way(state: WeComState, request: ApiRequest) -> dict:
    body = json_body(request)
    return {"url": state.directory.contact_way(body.get("open_kfid"), body.get("scene"))}


# -- servicers -----------------------------------------------------------------------------------

@_endpoint("/cgi-bin/kf/servicer/add")
def add_servicers(state: WeComState, request: ApiRequest) -> dict:
    body = json_body(request)
    return {"result_list": state.directory.change_servicers(body.get("open_kfid"), body.get("userid_list"), True)}


@_endpoint("/cgi-bin/kf/servicer/del")
def delete_servicers(state: WeComState, request: ApiRequest) -> dict:
    body = json_body(request)
    return {"result_list": state.directory.change_servicers(body.get("open_kfid"), body.get("userid_list"), False)}


@_endpoint("/cgi-bin/kf/servicer/list")
def list_servicers(state: WeComState, request: ApiRequest) -> dict:
    return {"servicer_list": state.directory.servicer_list(request.query.get("open_kfid"))}


# -- sessions and messages ---------------------------------------------------------------------

@_endpoint("/cgi-bin/kf/service_state/get")
def get_service_state(state: WeComState, request: ApiRequest) -> dict:
    body = json_body(request)
    return state.conversation(body.get("open_kfid"), body.get("external_userid")).view()


@_endpoint("/cgi-bin/kf/service_state/trans")
def trans_service_state(state: WeComState, request: ApiRequest) -> dict:
    return state.trans(json_body(request))


@_endpoint("/cgi-bin/kf/send_msg")
def send_message(state: WeComState, request: ApiRequest) -> dict:
    body = json_body(request)
    state.conversation(body.get("open_kfid"), body.get("touser"))
    return {"msgid": state.send(body, parse_outgoing(body))}


@_endpoint("/cgi-bin/kf/send_msg_on_event")
def send_message_on_event(state: WeComState, request: ApiRequest) -> dict:
    body = json_body(request)
    return {"msgid": state.send_on_event(parse_outgoing(body), body.get("code"))}


@_endpoint("/cgi-bin/kf/sync_msg")
def sync_messages(state: WeComState, request: ApiRequest) -> dict:
    body = json_body(request, optional=True)
    open_kfid = body.get("open_kfid")
    if open_kfid is not None:
        open_kfid = state.directory.account(open_kfid).open_kfid
    return state.inbox.sync(body, open_kfid, state.now())


@_endpoint("/cgi-bin/kf/customer/batchget")
def get_customers(state: WeComState, request: ApiRequest) -> dict:
    body = json_body(request)
    return state.directory.batchget(body.get("external_userid_list"), body.get("need_enter_session_context") == 1)


# -- statistics ------------------------------------------------------------------------------

@_endpoint("/cgi-bin/kf/get_corp_statistic")
def get_corp_statistic(state: WeComState, request: ApiRequest) -> dict:
    return {"statistic_list": corp_statistic(state, json_body(request))}


@_endpoint("/cgi-bin/kf/get_servicer_statistic")
def get_servicer_statistic(state: WeComState, request: ApiRequest) -> dict:
    return {"statistic_list": servicer_statistic(state, json_body(request))}
