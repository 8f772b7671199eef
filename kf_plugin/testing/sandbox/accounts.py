"""Customer-service (kf) accounts: names, nicknames, head images, invitations, binding, online status."""
from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from typing import Dict, List, Optional, Union

from .errors import ApiError

__all__ = ["AccountBook", "KfAccount", "Invitation", "INVITATION_LIFETIME", "MAX_ACCOUNTS"]

MAX_ACCOUNTS = 100
MAX_ACCOUNTS_PER_WECHAT_USER = 5
MAX_NICKNAME_CHARS = 16
MAX_HEADIMG_BYTES = 5 * 1024 * 1024
INVITATION_LIFETIME = 7 * 86400
FIRST_KF_ID = 1001

# prefix@suffix; WeChat wants the official account's WeChat id as suffix, which the sandbox
# cannot know, so any id-like suffix is accepted.
_KF_ACCOUNT = re.compile(r"[A-Za-z0-9_]{1,10}@[A-Za-z0-9_.-]+")
# WeChat's rule for a WeChat id: 6–20 characters, a letter first, then letters, digits, _ or -.
_WECHAT_ID = re.compile(r"[A-Za-z][A-Za-z0-9_-]{5,19}")
_JPEG_MAGIC = b"\xff\xd8"


@dataclass
class Invitation:
    wx: str
    expire_time: int
    rejected: bool = False

    def status(self, now: float) -> str:
        if self.rejected:
            return "rejected"
        return "expired" if now >= self.expire_time else "waiting"


@dataclass
class KfAccount:
    kf_account: str
    nickname: str
    kf_id: int
    headimgurl: str = ""
    wx: Optional[str] = None
    invitation: Optional[Invitation] = None
    online: bool = False
    status: int = 0

    def list_entry(self, now: float) -> Dict[str, Union[str, int]]:
        """The account as ``getkflist`` shows it."""
        entry: Dict[str, Union[str, int]] = {"kf_account": self.kf_account, "kf_nick": self.nickname,
                                             "kf_id": str(self.kf_id), "kf_headimgurl": self.headimgurl}
        if self.wx is not None:
            entry["kf_wx"] = self.wx
        if self.invitation is not None:
            entry.update(invite_wx=self.invitation.wx, invite_expire_time=self.invitation.expire_time,
                         invite_status=self.invitation.status(now))
        return entry


def check_wechat_id(wx: object) -> str:
    """:raises ApiError: 65409 when ``wx`` is not a well-formed WeChat id."""
    if not isinstance(wx, str) or not _WECHAT_ID.fullmatch(wx):
        raise ApiError(65409)
    return wx


def check_nickname(nickname: object) -> str:
    """:raises ApiError: 65403 when empty or longer than 16 characters."""
    if not isinstance(nickname, str) or not nickname.strip() or len(nickname) > MAX_NICKNAME_CHARS:
        raise ApiError(65403)
    return nickname


class AccountBook:
    """All kf accounts of the official account, by name."""

    def __init__(self) -> None:
        self._accounts: Dict[str, KfAccount] = {}
        self._next_kf_id = FIRST_KF_ID

    def __iter__(self):
        return iter(list(self._accounts.values()))

    def get(self, kf_account: object) -> KfAccount:
        """:raises ApiError: 65401 for an unknown account."""
        account = self._accounts.get(kf_account) if isinstance(kf_account, str) else None
        if account is None:
            raise ApiError(65401)
        return account

    def add(self, kf_account: object, nickname: object) -> KfAccount:
        """:raises ApiError: 65404 bad name, 65403 bad nickname, 65406 exists, 65405 100 accounts exist."""
        if not isinstance(kf_account, str) or not _KF_ACCOUNT.fullmatch(kf_account):
            raise ApiError(65404)
        valid_nickname = check_nickname(nickname)
        if kf_account in self._accounts:
            raise ApiError(65406)
        if len(self._accounts) >= MAX_ACCOUNTS:
            raise ApiError(65405)
        account = KfAccount(kf_account, valid_nickname, self._next_kf_id)
        self._next_kf_id += 1
        self._accounts[kf_account] = account
        return account

    def update(self, kf_account: object, nickname: object) -> None:
        """:raises ApiError: 65401 unknown account, 65403 bad nickname."""
        account = self.get(kf_account)
        account.nickname = check_nickname(nickname)

    def delete(self, kf_account: object) -> KfAccount:
        """:raises ApiError: 65401 unknown account."""
        return self._accounts.pop(self.get(kf_account).kf_account)

    def set_headimg(self, kf_account: object, image: Optional[bytes]) -> str:
        """Store a head image; the new ``kf_headimgurl``.

        :raises ApiError: 65401 unknown account, 41005 no ``media`` part,
            40009 larger than 5 MB, 40005 not a JPEG.
        """
        account = self.get(kf_account)
        if image is None:
            raise ApiError(41005)
        if len(image) > MAX_HEADIMG_BYTES:
            raise ApiError(40009)
        if not image.startswith(_JPEG_MAGIC):
            raise ApiError(40005)
        account.headimgurl = f"http://mmbiz.qpic.cn/mmbiz_jpg/{secrets.token_hex(16)}/300?wx_fmt=jpeg"
        return account.headimgurl

    def invite(self, kf_account: object, wx: object, now: float) -> Invitation:
        """Invite a WeChat user to bind the account; the invitation waits 7 days.

        :raises ApiError: 65401 unknown account, 65409 bad WeChat id, 65407 already its
            worker, 65412 bound to someone else, 65408 same user already invited,
            65411 another user's invitation is pending, 65410 the user has 5 accounts.
        """
        account = self.get(kf_account)
        wechat_id = check_wechat_id(wx)
        if account.wx is not None:
            raise ApiError(65407 if account.wx == wx else 65412)
        pending = account.invitation if account.invitation and account.invitation.status(now) == "waiting" else None
        if pending is not None:
            raise ApiError(65408 if pending.wx == wx else 65411)
        self._check_room_for(wechat_id)
        account.invitation = Invitation(wechat_id, int(now) + INVITATION_LIFETIME)
        return account.invitation

    def answer_invitation(self, kf_account: str, accept: bool, now: float) -> None:
        """The invited user accepts (the account becomes bound) or rejects.

        :raises ApiError: 65401 unknown account; 65410 when accepting would bind the user to a 6th account.
        :raises ValueError: no waiting invitation (none, rejected or expired).
        """
        account = self.get(kf_account)
        invitation = account.invitation
        if invitation is None or invitation.status(now) != "waiting":
            state = "no" if invitation is None else f"a {invitation.status(now)}"
            raise ValueError(f"{kf_account} has {state} invitation; call inviteworker first")
        if not accept:
            invitation.rejected = True
            return
        self._check_room_for(invitation.wx)
        account.wx, account.invitation = invitation.wx, None

    def bind(self, kf_account: str, wx: str) -> None:
        """Bind directly, skipping the invitation (a shortcut for tests).

        :raises ApiError: 65401, 65409, 65412 (bound to another user), 65410.
        """
        account = self.get(kf_account)
        check_wechat_id(wx)
        if account.wx == wx:
            return
        if account.wx is not None:
            raise ApiError(65412)
        self._check_room_for(wx)
        account.wx, account.invitation = wx, None

    def set_online(self, kf_account: str, online: bool, status: int = 1) -> None:
        """:raises ApiError: 65401, 65402 (only bound accounts can be online).
        :raises ValueError: ``status`` not 1, 2 or 3 (online; 2 and 3 are the old mobile/both values).
        """
        account = self.get(kf_account)
        if online and account.wx is None:
            raise ApiError(65402)
        if online and status not in (1, 2, 3):
            raise ValueError(f"status must be 1 (online), or the legacy 2 or 3; got {status!r}")
        account.online, account.status = online, (status if online else 0)

    def _check_room_for(self, wx: str) -> None:
        if sum(1 for account in self._accounts.values() if account.wx == wx) >= MAX_ACCOUNTS_PER_WECHAT_USER:
            raise ApiError(65410)

    def listed(self, now: float) -> List[dict]:
        return [account.list_entry(now) for account in self._accounts.values()]
