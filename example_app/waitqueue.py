"""The example bot's copy of WeChat's wait queue, so a queued user's notice can say their place.

The rule file's ``queue.notice`` ("您前面还有 {ahead} 位") needs the user's place in WeChat's wait queue, which
only ``kfsession/getwaitcase`` knows. Asking it on every push of a waiting user would put an API call on the
push's path (WeChat waits 5 s for an answer), so a background job reads the queue every few seconds and a
push reads this copy; a user it does not list gets ``queue.notice_fallback`` instead.
"""
from __future__ import annotations

import logging
import threading
from typing import Dict, Optional, Tuple

from kf_plugin import KfAdmin, KfError

__all__ = ["QueuePlaces"]

log = logging.getLogger(__name__)


class QueuePlaces:
    """Where each waiting user stands in WeChat's wait queue as last read; thread-safe.

    Call :meth:`refresh` from a job; call the object itself (``places(openid)``) on a push.
    """

    def __init__(self, admin: KfAdmin):
        self.admin = admin
        self._lock = threading.Lock()
        self._places: Dict[str, int] = {}
        self._count: Optional[int] = None
        self._asked = 0   # reads asked for so far
        self._kept = 0    # the number of the read the copy comes from

    def refresh(self) -> None:
        """Read the wait queue now. Never raises a :class:`~kf_plugin.KfError`: it is logged, and the copy is
        dropped (an old queue would tell users a place they left long ago). Two reads at once (the job's and
        a caller's): the one asked for last is kept."""
        with self._lock:
            self._asked += 1
            number = self._asked
        try:
            queue = self.admin.waiting()
        except KfError as exc:
            log.warning("could not read WeChat's wait queue: %s; queue notices say no place until it is read", exc)
            places: Dict[str, int] = {}
            count: Optional[int] = None
        else:
            places = {}
            for place, user in enumerate(queue.users, 1):
                places.setdefault(user.openid, place)
            count = queue.count
        with self._lock:
            if number > self._kept:
                self._places, self._count, self._kept = places, count, number

    def __call__(self, openid: str) -> Tuple[Optional[int], Optional[int]]:
        """``openid``'s place in the queue counting from 1, and how many wait; either ``None`` when unknown."""
        with self._lock:
            return self._places.get(openid), self._count
