"""What the tests of the hand-off sweep share (tests/test_reconcile_*.py): a hand-off store of either kind, agents
on the served sandbox, users queued or with an agent in both WeChat and the store, and a sweep with a hook
that keeps what it saw. The fixtures are registered for every test by ``pytest_plugins`` in conftest.py."""
from __future__ import annotations

from typing import List, Optional

import pytest

from kf_plugin.admin import KfAdmin
from kf_plugin.lifecycle import Change, Transition
from kf_plugin.queueing import QueuePolicy
from kf_plugin.reconcile import Reconciler
from kf_plugin.state import HandoffStore, MemoryHandoffStore

U, V, W = "oUserReconcile01", "oUserReconcile02", "oUserReconcile03"
WANG, LI = "wang@gh_test", "li@gh_test"
GETSESSION = "/customservice/kfsession/getsession"
GETWAITCASE = "/customservice/kfsession/getwaitcase"
TIMEOUT_TEXT = "客服暂时繁忙，请留言，我们会尽快回复您"
POLICY = QueuePolicy(timeout=600, timeout_text=TIMEOUT_TEXT)


@pytest.fixture(params=["memory", "redis"])
def store(request, api) -> HandoffStore:
    """A hand-off store on the sandbox's clock: in memory, or in the test database of ``redis_url``."""
    if request.param == "memory":
        return MemoryHandoffStore(clock=api.clock)
    import redis

    from kf_plugin.state.redis_handoffs import RedisHandoffStore
    return RedisHandoffStore(redis.Redis.from_url(request.getfixturevalue("redis_url")), "kf:{wxapp}:")


@pytest.fixture
def agents(api):
    """Two agents online in the sandbox: ``WANG`` and ``LI``."""
    for account, nickname in ((WANG, "小王"), (LI, "小李")):
        api.sandbox.add_agent(account, nickname, wx=account.split("@")[0] + "_wechat", online=True)


class Hook:
    """An ``on_transition`` that keeps what it saw, and fails when told to."""

    def __init__(self, fails: bool = False):
        self.seen: List[Transition] = []
        self.fails = fails

    def __call__(self, transition: Transition) -> None:
        self.seen.append(transition)
        if self.fails:
            raise RuntimeError("the hook's own bug")


def reconciler(api, store, admin: Optional[KfAdmin], policy: QueuePolicy = POLICY, **options) -> Reconciler:
    """A sweep of ``store`` on the sandbox's clock, with a fresh :class:`Hook` unless ``on_transition`` is given."""
    options.setdefault("on_transition", Hook())
    return Reconciler(store, admin, policy, clock=api.clock, **options)


def queued(api, store, openid: str) -> None:
    """The user asked for a human: waiting in WeChat's queue, and queued in the store."""
    api.sandbox.interact(openid, "message")
    api.sandbox.enqueue(openid)
    store.apply(openid, Change("request", api.clock(), reason="ask-for-human"))


def with_agent(api, store, openid: str, agent: str = WANG) -> None:
    """The user is in ``agent``'s session, and the store heard so."""
    queued(api, store, openid)
    api.clock.advance(5)
    api.sandbox.accept(openid, agent)
    store.apply(openid, Change("accept", api.clock(), agent=agent))


def record_of(store: HandoffStore, transition: Transition):
    """The hand-off record ``transition`` touched, as ``store`` keeps it now."""
    assert transition.record is not None
    return store.record(transition.record.id)
