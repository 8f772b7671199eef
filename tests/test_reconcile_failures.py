"""The hand-off sweep when the API, the store or the transition hook fails: logged, never raised; the state is
left as it was and the next sweep tries again."""
from __future__ import annotations

import logging
from typing import List, Sequence, Tuple

import pytest

from kf_plugin.admin import KfAdmin
from kf_plugin.client import KfClient
from kf_plugin.lifecycle import Change, Conversation, Stage, Transition
from kf_plugin.state import MemoryHandoffStore

from .reconcile_support import GETSESSION, LI, WANG, Hook, U, V, W, queued, reconciler, with_agent
from .redis_servers import free_port


def test_an_api_failing_for_everyone_leaves_the_state_and_stops_asking(api, admin, store, agents, caplog):
    with_agent(api, store, U)
    queued(api, store, V)
    api.sandbox.close(U)
    api.sandbox.accept(V, LI)
    before = [store.conversation(U), store.conversation(V)]
    api.sandbox.faults.fail_next(45009, times=5, path=GETSESSION)
    report = reconciler(api, store, admin).sweep()
    assert [store.conversation(U), store.conversation(V)] == before
    assert report.transitions == () and not report.complete and report.failures == 1
    assert len(api.sandbox.calls_to(GETSESSION)) == 1       # no point asking again within the sweep
    [line] = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert "errcode 45009 (API call frequency or daily limit reached)" in line and "next sweep" in line
    api.sandbox.faults.clear()
    assert len(reconciler(api, store, admin).sweep().transitions) == 2


def test_an_error_about_one_user_is_logged_once_and_the_others_are_checked(api, admin, store, agents, caplog):
    for stranger in (V, W):         # WeChat does not know them: 40003
        store.apply(stranger, Change("request", api.clock(), reason="ask-for-human"))
    api.clock.advance(1)
    queued(api, store, U)
    api.sandbox.accept(U, WANG)
    report = reconciler(api, store, admin).sweep()
    assert store.conversation(U).agent == WANG and report.failures == 2 and report.complete
    [line] = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert "getsession failed for 2 user(s) with errcode 40003" in line and V in line


def test_a_network_failure_is_logged_and_changes_nothing(api, store, caplog):
    queued(api, store, U)
    dead = KfAdmin(KfClient(api.sandbox.appid, api.sandbox.secret, api_base_url=f"http://127.0.0.1:{free_port()}",
                            timeout=0.5))
    dead.client.attempts = 1
    report = reconciler(api, store, dead).sweep()
    assert store.conversation(U).stage is Stage.QUEUED and not report.complete
    assert "with errcode network (cannot reach the WeChat API" in caplog.text


class FailingStore(MemoryHandoffStore):
    """A store whose ``fail_on`` fails: a read (``active``, ``in_handoff``, ``conversations`` of at least one
    user) or applying a change of that kind."""

    def __init__(self, clock, fail_on: str):
        super().__init__(clock=clock)
        self.fail_on = fail_on

    def active(self, limit: int = 1000) -> List[Conversation]:
        if self.fail_on == "active":
            raise ConnectionError("the store is away")
        return super().active(limit)

    def in_handoff(self, limit: int = 1000) -> List[Tuple[str, float]]:
        if self.fail_on == "in_handoff":
            raise ConnectionError("the store is away")
        return super().in_handoff(limit)

    def conversations(self, openids: Sequence[str]) -> List[Conversation]:
        if self.fail_on == "conversations" and openids:
            raise ConnectionError("the store is away")
        return super().conversations(openids)

    def apply(self, openid: str, change: Change) -> Transition:
        if self.fail_on == change.kind:
            raise ConnectionError("the store is away")
        return super().apply(openid, change)


@pytest.mark.parametrize("fail_on", ["active", "timeout"])
def test_a_store_failure_is_logged_never_raised(api, admin, fail_on, caplog):
    failing = FailingStore(api.clock, fail_on)
    queued(api, failing, U)
    api.clock.advance(601)
    report = reconciler(api, failing, admin).sweep()
    assert not report.complete and report.transitions == ()
    assert "the store is away" in caplog.text and api.sandbox.sent == []


@pytest.mark.parametrize("fail_on, waited, what", [
    ("in_handoff", 601, "list the users in a hand-off"),
    ("conversations", 601, "read the conversations of 1 overdue user(s)"),
    ("conversations", 0, "read the conversations of 1 user(s) to ask WeChat about"),
], ids=["listing", "overdue", "to-ask-about"])
def test_a_failing_store_read_is_logged_as_what_it_was_reading(api, admin, fail_on, waited, what, caplog):
    failing = FailingStore(api.clock, fail_on)
    queued(api, failing, U)
    api.clock.advance(waited)
    report = reconciler(api, failing, admin).sweep()
    assert not report.complete and report.transitions == ()
    assert api.sandbox.calls_to(GETSESSION) == [] and api.sandbox.sent == []
    [record] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert record.getMessage() == f"hand-off sweep: could not {what}; the sweep ends here"
    assert record.exc_info is not None and record.exc_info[1].args == ("the store is away",)


def test_redis_down_without_failover_is_logged_never_raised(api, admin, caplog):
    import redis

    from kf_plugin.state.redis_handoffs import RedisHandoffStore
    down = RedisHandoffStore(redis.Redis(port=free_port(), socket_connect_timeout=0.2), "kf:{wxapp}:")
    assert reconciler(api, down, admin).sweep().complete is False
    assert "could not list the users in a hand-off" in caplog.text


def test_a_failing_hook_is_logged_and_every_user_still_moves(api, admin, store, caplog):
    queued(api, store, U)
    queued(api, store, V)
    api.clock.advance(601)
    hook = Hook(fails=True)
    report = reconciler(api, store, admin, on_transition=hook).sweep()
    assert [t.before.openid for t in hook.seen] == [U, V] and len(report.transitions) == 2
    assert store.conversation(U).stage is store.conversation(V).stage is Stage.BOT
    failures = [r for r in caplog.records if r.getMessage().startswith("hand-off sweep: the transition hook failed")]
    assert [r.exc_info[1].args for r in failures] == [("the hook's own bug",)] * 2


def test_settings_out_of_range_are_refused(api, store):
    with pytest.raises(ValueError, match="max_checks and max_active must be at least 1"):
        reconciler(api, store, None, max_checks=0)
