"""The hand-off sweep times out users left in the queue (on both store kinds: memory, and the test database of
``redis_url``: skipped without Redis, except in CI), and the plugin schedules it: one worker of an account
sweeps an interval."""
from __future__ import annotations

from typing import List

import pytest

from kf_plugin.lifecycle import Change, Conversation, Ending, Stage
from kf_plugin.queueing import QueuePolicy
from kf_plugin.state import MemoryHandoffStore

from .reconcile_support import GETSESSION, TIMEOUT_TEXT, WANG, Hook, U, queued, reconciler, record_of

# -- the timeout --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("waited, text, moved", [
    (599, TIMEOUT_TEXT, False),     # not yet past the timeout: stays in the queue
    (600, TIMEOUT_TEXT, True),
    (601, None, True),              # no text: back with the bot, nothing sent
])
def test_a_user_queued_past_the_timeout_goes_back_to_the_bot(api, admin, store, waited, text, moved):
    queued(api, store, U)
    api.clock.advance(waited)
    hook = Hook()
    policy = QueuePolicy(timeout=600, timeout_text=text)
    report = reconciler(api, store, admin, policy, on_transition=hook).sweep()
    conv = store.conversation(U)
    if not moved:
        assert conv.stage is Stage.QUEUED and hook.seen == [] and report.transitions == ()
        assert api.sandbox.sent == []
        return
    assert conv == Conversation(U)   # with the bot: nothing stored
    [transition] = hook.seen
    assert transition.after == Conversation(U, Stage.BOT, api.clock())
    assert transition.change.kind == "timeout" and report.transitions == (transition,) and report.complete
    kept = record_of(store, transition)
    assert kept.outcome is Ending.TIMED_OUT and kept.ended_at == api.clock()
    sent = [(m["touser"], m["text"]["content"]) for m in api.sandbox.sent]
    assert sent == ([(U, TIMEOUT_TEXT)] if text else [])


def test_a_timed_out_user_is_told_once(api, admin, store):
    queued(api, store, U)
    api.clock.advance(700)
    sweeper = reconciler(api, store, admin)
    assert len(sweeper.sweep().transitions) == 1
    assert sweeper.sweep().transitions == ()
    assert len(api.sandbox.sent) == 1


def test_a_timeout_text_outside_the_48_hours_is_logged_and_the_user_timed_out(api, admin, store, caplog):
    api.sandbox.interact(U, "message", at=api.clock() - 49 * 3600)
    store.apply(U, Change("request", api.clock(), reason="ask-for-human"))
    api.clock.advance(601)
    report = reconciler(api, store, admin).sweep()
    assert store.conversation(U).stage is Stage.BOT and len(report.transitions) == 1
    assert api.sandbox.sent == [] and report.failures == 1
    assert "message/custom/send failed for 1 user(s) with errcode 45015 (outside the 48-hour window" in caplog.text


def test_an_overdue_user_whom_an_agent_took_is_not_timed_out(api, admin, store, agents):
    queued(api, store, U)
    api.clock.advance(700)
    api.sandbox.accept(U, WANG)     # the bot never heard of it
    report = reconciler(api, store, admin).sweep()
    assert store.conversation(U).stage is Stage.WITH_AGENT and api.sandbox.sent == []
    assert [t.change.kind for t in report.transitions] == ["accept"]


def test_without_an_admin_only_the_timeout_is_applied(api, store):
    queued(api, store, U)
    api.clock.advance(601)
    api.sandbox.clear_calls()
    report = reconciler(api, store, None).sweep()
    assert store.conversation(U).stage is Stage.BOT and len(report.transitions) == 1
    assert api.sandbox.calls == [] and api.sandbox.sent == []


class Racing(MemoryHandoffStore):
    """A store on which, right after the sweep lists the users, another worker hears ``openid`` cancel and ask
    for a human again."""

    def __init__(self, clock, openid: str):
        super().__init__(clock=clock)
        self.clock, self.openid = clock, openid

    def active(self, limit: int = 1000) -> List[Conversation]:
        listed = super().active(limit)
        self.clock.advance(1)
        self.apply(self.openid, Change("cancel", self.clock()))
        self.apply(self.openid, Change("request", self.clock(), reason="again"))
        return listed


def test_a_request_made_after_the_sweep_began_is_not_timed_out(api):
    racing = Racing(api.clock, U)
    racing.apply(U, Change("request", api.clock(), reason="ask-for-human"))
    api.clock.advance(601)
    report = reconciler(api, racing, None).sweep()
    assert report.transitions == () and racing.conversation(U).reason == "again"



# -- through the plugin ---------------------------------------------------------------------------------------

PLUGIN_RULES = """\
version: 1
queue:
  notice: "您前面还有 {ahead} 位"
  timeout: 10m
  timeout_text: "客服暂时繁忙，请留言，我们会尽快回复您"
rules:
  - name: ask-for-human
    keywords: 转人工
"""


@pytest.mark.parametrize("state", ["memory", "redis"])
def test_the_plugin_schedules_the_sweep_that_times_a_queued_user_out(api, make_app, tmp_path, request, state):
    from kf_plugin.testing import WeChatTestClient
    path = tmp_path / "rules.yaml"
    path.write_text(PLUGIN_RULES, encoding="utf-8")
    config = {"KF_REDIS_URL": request.getfixturevalue("redis_url")} if state == "redis" else {}
    app = make_app(plugin_options={"clock": api.clock}, KF_RULES=str(path), KF_SECRET=api.sandbox.secret,
                   KF_APPID=api.sandbox.appid, KF_API_BASE_URL=api.url, KF_MAX_CLOCK_SKEW=0, **config)
    plugin = app.extensions["kf_plugin"].plugin
    request.addfinalizer(plugin.shutdown)
    api.sandbox.interact(U, "message")
    assert WeChatTestClient(app).send_text("转人工", sender=U).message_type == "transfer_customer_service"
    jobs = {job.id for job in plugin.jobs.scheduler.get_jobs()}   # started by the first push
    assert {f"kf_plugin:{api.sandbox.appid}:handoff-sweep", f"kf_plugin:{api.sandbox.appid}:wait-queue"} <= jobs
    with app.app_context():
        assert plugin.conversation(U).stage is Stage.QUEUED
        api.clock.advance(601)
        app.extensions["kf_plugin"].services.reconciler.sweep()
        assert plugin.conversation(U).stage is Stage.BOT
        [record] = plugin.handoffs(0)
    assert record.outcome is Ending.TIMED_OUT
    assert [m["text"]["content"] for m in api.sandbox.sent if m["touser"] == U] == [TIMEOUT_TEXT]


def test_a_worker_whose_turn_it_is_not_sweeps_nothing(api, store, admin, agents):
    store.apply(U, Change("request", at=api.clock() - 3600, reason="ask-for-human", handoff_id="h-turn"))
    hook = Hook()
    skipped = reconciler(api, store, admin, on_transition=hook, turn=lambda: False).sweep()
    assert (skipped.transitions, skipped.checked) == ((), 0)
    assert api.sandbox.calls_to(GETSESSION) == []
    assert store.conversation(U).stage is Stage.QUEUED


def test_a_turn_that_cannot_be_asked_sweeps_anyway(api, store, admin, agents, caplog):
    store.apply(U, Change("request", at=api.clock() - 3600, reason="ask-for-human", handoff_id="h-turn"))

    def broken() -> bool:
        raise ConnectionError("the lease's store is down")
    report = reconciler(api, store, admin, turn=broken).sweep()
    assert report.transitions and "sweeping anyway" in caplog.text


def test_one_worker_of_an_account_sweeps_an_interval(api, make_app, tmp_path, request, redis_url, monkeypatch):
    path = tmp_path / "rules.yaml"
    path.write_text(PLUGIN_RULES, encoding="utf-8")
    app = make_app(KF_RULES=str(path), KF_SECRET=api.sandbox.secret, KF_APPID=api.sandbox.appid,
                   KF_API_BASE_URL=api.url, KF_REDIS_URL=redis_url)
    request.addfinalizer(app.extensions["kf_plugin"].plugin.shutdown)
    services = app.extensions["kf_plugin"].services
    turns = []
    for pid in (1001, 1002, 1001, 1001):   # two worker processes sharing Redis, as the lease sees them
        monkeypatch.setattr("kf_plugin.services.os.getpid", lambda pid=pid: pid)
        turns.append(services._sweep_turn())
    assert turns == [True, False, True, True]   # the holder renews its turn each interval; the other skips
