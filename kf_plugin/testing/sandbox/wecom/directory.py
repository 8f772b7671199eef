"""Who is who in the corp: kf accounts and their links, members (the servicers), and the WeChat customers.

A servicer's receiving status belongs to the member, as in WeCom's client (one switch
for every account they serve); ``activated`` is whether the member has activated
WeCom — only activated, receiving servicers can take a session (95014 otherwise).
"""
from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

from .errors import INVALID_PARAMETER, WeComError

__all__ = ["Directory", "KfAccount", "Member", "Customer", "MAX_NAME_CHARS", "MAX_LISTED_ACCOUNTS",
           "MAX_USERIDS_PER_CALL", "MAX_CUSTOMERS_PER_CALL", "check_text"]

MAX_NAME_CHARS = 16
MAX_MEDIA_ID_BYTES = 128
MAX_LISTED_ACCOUNTS = 100
MAX_USERIDS_PER_CALL = 100
MAX_CUSTOMERS_PER_CALL = 100
MAX_SCENE_BYTES = 32
MAX_SCENE_PARAM_BYTES = 128
_SCENE = re.compile(r"[0-9a-zA-Z_-]*")
_USERID = re.compile(r"[A-Za-z0-9_@.-]{1,64}")
_OPEN_KFID = re.compile(r"wk[A-Za-z0-9_-]{8,62}")


@dataclass
class KfAccount:
    open_kfid: str
    name: str
    media_id: str
    avatar: str
    servicers: List[str] = field(default_factory=list)  # userids, in the order added

    def listed(self) -> Dict[str, Any]:
        """The account as ``account/list`` shows it."""
        return {"open_kfid": self.open_kfid, "name": self.name, "avatar": self.avatar, "manage_privilege": True}


@dataclass
class Member:
    userid: str
    activated: bool = True
    receiving: bool = True


@dataclass
class Customer:
    external_userid: str
    nickname: str
    avatar: str
    gender: int = 0
    unionid: Optional[str] = None
    enter_context: Optional[Dict[str, str]] = None  # scene and scene_param of the latest enter_session

    def profile(self, with_context: bool) -> Dict[str, Any]:
        """The customer as ``customer/batchget`` shows them."""
        entry: Dict[str, Any] = {"external_userid": self.external_userid, "nickname": self.nickname,
                                 "avatar": self.avatar, "gender": self.gender}
        if self.unionid:
            entry["unionid"] = self.unionid
        if with_context and self.enter_context is not None:
            entry["enter_session_context"] = dict(self.enter_context)
        return entry


def check_text(value: object, name: str, max_bytes: int, pattern: Optional["re.Pattern[str]"] = None) -> str:
    """``value`` if it is a string of at most ``max_bytes`` UTF-8 bytes (matching ``pattern`` if given).

    :raises WeComError: 40058 naming ``name`` otherwise.
    """
    if not isinstance(value, str) or len(value.encode("utf-8")) > max_bytes:
        raise WeComError(INVALID_PARAMETER, f"{name} must be a string of at most {max_bytes} bytes")
    if pattern is not None and not pattern.fullmatch(value):
        raise WeComError(INVALID_PARAMETER, f"{name} has characters outside {pattern.pattern}")
    return value


def _name(value: object) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_NAME_CHARS:
        raise WeComError(INVALID_PARAMETER, f"name must be 1 to {MAX_NAME_CHARS} characters")
    return value


def _media_id(value: object) -> str:
    if value is None or value == "":
        raise WeComError(41006)
    if not isinstance(value, str) or len(value.encode("utf-8")) > MAX_MEDIA_ID_BYTES:
        raise WeComError(40007)
    return value


class Directory:
    """Accounts by open_kfid, members by userid, customers by external_userid, links by URL."""

    def __init__(self) -> None:
        self.accounts: Dict[str, KfAccount] = {}
        self.members: Dict[str, Member] = {}
        self.customers: Dict[str, Customer] = {}
        self.links: Dict[str, Tuple[str, str]] = {}  # url -> (open_kfid, scene)

    # -- accounts ----------------------------------------------------------------------

    def account(self, open_kfid: object) -> KfAccount:
        """:raises WeComError: 95000 missing or malformed, 95004 no such account."""
        if not isinstance(open_kfid, str) or not _OPEN_KFID.fullmatch(open_kfid):
            raise WeComError(95000)
        account = self.accounts.get(open_kfid)
        if account is None:
            raise WeComError(95004)
        return account

    def add_account(self, name: object, media_id: object) -> KfAccount:
        """:raises WeComError: 40058 bad name, 41006 no media_id, 40007 media_id over 128 bytes."""
        account = KfAccount("wk" + secrets.token_urlsafe(22), _name(name), _media_id(media_id),
                            f"https://wework.qpic.cn/wwhead/{secrets.token_hex(16)}/0")
        self.accounts[account.open_kfid] = account
        return account

    def update_account(self, open_kfid: object, name: object, media_id: object) -> None:
        """:raises WeComError: 95000/95004 the account, 40058 bad or no change, 40007 bad media_id."""
        account = self.account(open_kfid)
        if name is None and media_id is None:
            raise WeComError(INVALID_PARAMETER, "give name or media_id to change")
        new_name = account.name if name is None else _name(name)
        account.media_id = account.media_id if media_id is None else _media_id(media_id)
        account.name = new_name

    def delete_account(self, open_kfid: object) -> KfAccount:
        """:raises WeComError: 95000/95004 the account."""
        return self.accounts.pop(self.account(open_kfid).open_kfid)

    def listed(self, offset: object, limit: object) -> List[Dict[str, Any]]:
        """``account/list``'s page: ``limit`` (1–100) accounts from ``offset``.

        :raises WeComError: 40058 an offset below 0 or a limit outside 1..100.
        """
        if not isinstance(offset, int) or isinstance(offset, bool) or offset < 0:
            raise WeComError(INVALID_PARAMETER, "offset must be an integer ≥ 0")
        if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= MAX_LISTED_ACCOUNTS:
            raise WeComError(INVALID_PARAMETER, f"limit must be an integer in 1..{MAX_LISTED_ACCOUNTS}")
        return [a.listed() for a in list(self.accounts.values())[offset:offset + limit]]

    def contact_way(self, open_kfid: object, scene: object) -> str:
        """A new kf link for the account, carrying ``scene`` (the link then takes a ``scene_param``).

        :raises WeComError: 95000/95004 the account, 40058 a scene over 32 bytes or outside [0-9a-zA-Z_-].
        """
        account = self.account(open_kfid)
        scene_text = "" if scene is None else check_text(scene, "scene", MAX_SCENE_BYTES, _SCENE)
        url = f"https://work.weixin.qq.com/kf/kfc{secrets.token_hex(8)}"
        if scene_text:
            url += f"?enc_scene=ENC{secrets.token_urlsafe(12)}"
        self.links[url] = (account.open_kfid, scene_text)
        return url

    # -- members and servicers -----------------------------------------------------------

    def add_member(self, userid: str, activated: bool = True) -> Member:
        """The member ``userid`` (created if new; ``activated`` applies either way).

        :raises ValueError: a userid that is not 1–64 letters, digits or ``_@.-``.
        """
        if not isinstance(userid, str) or not _USERID.fullmatch(userid):
            raise ValueError(f"userid must be 1-64 letters, digits or _@.- (got {userid!r})")
        member = self.members.setdefault(userid, Member(userid))
        member.activated = activated
        return member

    def change_servicers(self, open_kfid: object, userids: object, add: bool) -> List[Dict[str, Any]]:
        """``servicer/add`` (``add``) or ``servicer/del``: the result of each userid (60111 not a member).

        Adding a servicer already there, or removing one who is not, succeeds and changes nothing.

        :raises WeComError: 95000/95004 the account, 40058 a userid_list that is not 1–100 strings.
        """
        account = self.account(open_kfid)
        if (not isinstance(userids, list) or not 1 <= len(userids) <= MAX_USERIDS_PER_CALL
                or not all(isinstance(u, str) for u in userids)):
            raise WeComError(INVALID_PARAMETER, f"userid_list must hold 1 to {MAX_USERIDS_PER_CALL} userids")
        results = []
        for userid in userids:
            errcode = 0 if userid in self.members else 60111
            if errcode == 0 and add and userid not in account.servicers:
                account.servicers.append(userid)
            elif errcode == 0 and not add and userid in account.servicers:
                account.servicers.remove(userid)
            results.append({"userid": userid, "errcode": errcode, "errmsg": "ok" if errcode == 0 else
                            "userid not found"})
        return results

    def servicer_list(self, open_kfid: object) -> List[Dict[str, Any]]:
        """``servicer/list``: each servicer's userid and status (0 receiving, 1 stopped).

        :raises WeComError: 95000/95004 the account.
        """
        account = self.account(open_kfid)
        return [{"userid": userid, "status": 0 if self.members[userid].receiving else 1}
                for userid in account.servicers]

    def receiving_servicer(self, account: KfAccount, userid: object) -> str:
        """``userid`` if they serve ``account``, are activated and receiving.

        :raises WeComError: 40058 no userid, 95014 not such a servicer.
        """
        if not isinstance(userid, str) or not userid:
            raise WeComError(INVALID_PARAMETER, "servicer_userid is required for service_state 3")
        member = self.members.get(userid)
        if userid not in account.servicers or member is None or not (member.activated and member.receiving):
            raise WeComError(95014, f"{userid} is not an activated, receiving servicer of {account.open_kfid}")
        return userid

    # -- customers -------------------------------------------------------------------------

    def customer(self, external_userid: object) -> Customer:
        """:raises WeComError: 40096 a customer the corp does not know."""
        customer = self.customers.get(external_userid) if isinstance(external_userid, str) else None
        if customer is None:
            raise WeComError(40096)
        return customer

    def ensure_customer(self, external_userid: str) -> Customer:
        """The customer, created with a default profile when new.

        :raises ValueError: an empty external_userid.
        """
        if not isinstance(external_userid, str) or not external_userid:
            raise ValueError("external_userid must be a non-empty string (WeCom's look like wm...)")
        customer = self.customers.get(external_userid)
        if customer is None:
            customer = self.customers[external_userid] = Customer(
                external_userid, f"客户{len(self.customers) + 1}",
                f"http://wx.qlogo.cn/mmhead/{secrets.token_hex(16)}/0")
        return customer

    def set_profile(self, external_userid: str, nickname: Optional[str], gender: int,
                    unionid: Optional[str]) -> Customer:
        """The customer (created if new) with this profile; a None nickname keeps the one they have.

        :raises ValueError: an empty external_userid, a gender outside 0–2.
        """
        if gender not in (0, 1, 2):
            raise ValueError(f"gender must be 0 (unknown), 1 (male) or 2 (female), got {gender!r}")
        customer = self.ensure_customer(external_userid)
        customer.nickname = nickname or customer.nickname
        customer.gender, customer.unionid = gender, unionid
        return customer

    def batchget(self, external_userids: object, with_context: bool) -> Dict[str, Any]:
        """``customer/batchget``: the profiles of the known customers, the unknown ids apart.

        :raises WeComError: 40058 a list that is not 1–100 strings.
        """
        if (not isinstance(external_userids, list) or not 1 <= len(external_userids) <= MAX_CUSTOMERS_PER_CALL
                or not all(isinstance(e, str) for e in external_userids)):
            raise WeComError(INVALID_PARAMETER,
                             f"external_userid_list must hold 1 to {MAX_CUSTOMERS_PER_CALL} external_userids")
        known = [self.customers[e].profile(with_context) for e in external_userids if e in self.customers]
        unknown = [e for e in external_userids if e not in self.customers]
        return {"customer_list": known, "invalid_external_userid": unknown}

    def check_scene(self, open_kfid: str, scene: Optional[str], scene_param: Optional[str]) -> None:
        """:raises ValueError: a scene that is not 0–32 of [0-9a-zA-Z_-], a scene_param over 128 bytes or
        without a scene."""
        if scene is not None and (not isinstance(scene, str) or len(scene.encode()) > MAX_SCENE_BYTES
                                  or not _SCENE.fullmatch(scene)):
            raise ValueError(f"scene must be at most {MAX_SCENE_BYTES} of [0-9a-zA-Z_-], got {scene!r}")
        if scene_param is not None:
            if not scene:
                raise ValueError(f"a scene_param needs a scene: only links with a scene take one ({open_kfid})")
            if not isinstance(scene_param, str) or len(scene_param.encode("utf-8")) > MAX_SCENE_PARAM_BYTES:
                raise ValueError(f"scene_param must be a string of at most {MAX_SCENE_PARAM_BYTES} bytes")
