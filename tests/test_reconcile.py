"""The background side of hand-offs, against the served sandbox: the wait-queue cache, and the sweep that times
out queued users and makes up for missed session events, on both store kinds (memory, and the test database of
``redis_url``: skipped without Redis, except in CI)."""
from __future__ import annotations

import logging
import threading
from typing import List, Optional

import pytest

from kf_plugin.admin import KfAdmin, Session
from kf_plugin.client import KfClient
from kf_plugin.lifecycle import Change, Conversation, Ending, Stage, Transition
from kf_plugin.queueing import QueuePolicy
from kf_plugin.reconcile import QueueWatch, Reconciler, session_change
from kf_plugin.state import HandoffStore, MemoryHandoffStore

from .redis_servers import free_port

U, V, W = "oUserReconcile01", "oUserReconcile02", "oUserReconcile03"
WANG, LI = "wang@gh_test", "li@gh_test"
GETSESSION = "/customservice/kfsession/getsession"
GETWAITCASE = "/customservice/kfsession/getwaitcase"
SEND = "/cgi-bin/message/custom/send"
TIMEOUT_TEXT = "客服暂时繁忙，请留言，我们会尽快回复您"
POLICY = QueuePolicy(timeout=600, timeout_text=TIMEOUT_TEXT)


@pytest.fixture(params=["memory", "redis"])
def store(request, api) -> HandoffStore:
    if request.param == "memory":
        return MemoryHandoffStore(clock=api.clock)
    import redis

    from kf_plugin.state.redis_handoffs import RedisHandoffStore
    return RedisHandoffStore(redis.Redis.from_url(request.getfixturevalue("redis_url")), "kf:{wxapp}:")


@pytest.fixture
def agents(api):
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
    assert transition.record is not None
    return store.record(transition.record.id)


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


# -- sessions WeChat knows of and the bot missed --------------------------------------------------------------

def test_a_missed_close_is_made_up_for(api, admin, store, agents):
    with_agent(api, store, U)
    api.clock.advance(120)
    api.sandbox.close(U)            # kf_close_session never reached the bot
    hook = Hook()
    report = reconciler(api, store, admin, on_transition=hook).sweep()
    assert store.conversation(U) == Conversation(U)
    [transition] = hook.seen
    assert transition.after == Conversation(U, Stage.BOT, api.clock())
    assert transition.change.kind == "close" and report.checked == 1
    kept = record_of(store, transition)
    assert (kept.outcome, kept.agent, kept.ended_at) == (Ending.ACCEPTED, WANG, api.clock())


def test_a_missed_accept_is_made_up_for(api, admin, store, agents):
    queued(api, store, U)
    api.clock.advance(30)
    api.sandbox.accept(U, WANG)
    api.clock.advance(10)
    hook = Hook()
    reconciler(api, store, admin, on_transition=hook).sweep()
    conv = store.conversation(U)
    assert (conv.stage, conv.agent) == (Stage.WITH_AGENT, WANG)
    [transition] = hook.seen
    kept = record_of(store, transition)
    assert kept.accepted_at == api.sandbox.sessions[U]["createtime"]   # when the agent took the user
    assert kept.reason == "ask-for-human" and kept.outcome is None


def test_users_with_the_bot_are_not_asked_about(api, admin, store, agents):
    api.sandbox.interact(U, "message")
    api.sandbox.accept(U, WANG)     # from the console: only its kf_create_session tells the bot
    report = reconciler(api, store, admin).sweep()
    assert report.checked == 0 and api.sandbox.calls_to(GETSESSION) == []
    assert store.conversation(U) == Conversation(U)


def test_a_missed_switch_is_made_up_for(api, admin, store, agents):
    with_agent(api, store, U, WANG)
    api.clock.advance(60)
    api.sandbox.switch(U, LI)
    hook = Hook()
    reconciler(api, store, admin, on_transition=hook).sweep()
    conv = store.conversation(U)
    assert (conv.stage, conv.agent, conv.since) == (Stage.WITH_AGENT, LI, api.clock())
    [transition] = hook.seen
    assert transition.change.kind == "switch" and record_of(store, transition).agent == LI


def test_users_in_step_with_wechat_stay_as_they_are(api, admin, store, agents):
    queued(api, store, U)
    with_agent(api, store, V)
    before = [store.conversation(U), store.conversation(V)]
    report = reconciler(api, store, admin).sweep()
    assert report.transitions == () and report.checked == 2 and report.complete
    assert [store.conversation(U), store.conversation(V)] == before


@pytest.mark.parametrize("conv, session, expected", [
    (Conversation(U), Session(U, WANG, 100), None),       # with the bot: not the sweep's business
    (Conversation(U, Stage.QUEUED, 100.5), None, None),   # still waiting, as far as anyone knows
    (Conversation(U, Stage.QUEUED, 100.5), Session(U, WANG, 130), Change("accept", 130, WANG)),
    (Conversation(U, Stage.QUEUED, 100.5), Session(U, WANG, 100), Change("accept", 100.5, WANG)),
    (Conversation(U, Stage.QUEUED, 100.5), Session(U, WANG, 999), Change("accept", 200, WANG)),
    (Conversation(U, Stage.QUEUED, 100.5), Session(U, WANG, 0), Change("accept", 200, WANG)),
    (Conversation(U, Stage.WITH_AGENT, 100, WANG), Session(U, WANG, 100), None),
    (Conversation(U, Stage.WITH_AGENT, 100, WANG), None, Change("close", 200, WANG)),
    (Conversation(U, Stage.WITH_AGENT, 100, WANG), Session(U, LI, 150), Change("switch", 200, LI)),
])
def test_session_change(conv, session, expected):
    assert session_change(conv, session, at=200) == expected


# -- a bounded number of calls ----------------------------------------------------------------------------

def test_a_backlog_is_checked_over_several_sweeps(api, admin, store, agents):
    users = [f"oBacklog{n:02d}" for n in range(5)]
    for openid in users:
        queued(api, store, openid)
        api.clock.advance(1)
        api.sandbox.accept(openid, WANG)
    sweeper = reconciler(api, store, admin, max_checks=2)
    moved = []
    for _ in range(3):
        api.sandbox.clear_calls()
        moved.append([t.before.openid for t in sweeper.sweep().transitions])
        assert len(api.sandbox.calls_to(GETSESSION)) <= 2
    assert moved == [users[:2], users[2:4], users[4:]]   # oldest first, then those not asked about yet


def test_turns_go_round_when_nothing_changes(api, admin, store, agents):
    users = [f"oTurns{n:02d}" for n in range(5)]
    for openid in users:
        with_agent(api, store, openid)
    sweeper = reconciler(api, store, admin, max_checks=2)
    asked = []
    for _ in range(3):
        api.sandbox.clear_calls()
        sweeper.sweep()
        asked.append([call.query["openid"] for call in api.sandbox.calls_to(GETSESSION)])
    assert asked == [users[0:2], users[2:4], [users[4], users[0]]]   # the least recently asked first


def test_users_a_fresh_queue_lists_as_waiting_are_not_asked_about(api, admin, store, agents):
    queued(api, store, U)
    queued(api, store, V)
    watch = QueueWatch(admin, max_age=10, clock=api.clock)
    watch.refresh()
    api.sandbox.clear_calls()
    reconciler(api, store, admin, queue=watch).sweep()
    assert api.sandbox.calls_to(GETSESSION) == []
    api.clock.advance(11)           # the queue read is no longer fresh: ask
    reconciler(api, store, admin, queue=watch).sweep()
    assert sorted(call.query["openid"] for call in api.sandbox.calls_to(GETSESSION)) == [U, V]


class Reads:
    """Notes the users whose conversations the sweep reads from ``store``."""

    def __init__(self, store: HandoffStore):
        self.openids: List[str] = []
        self.conversations = store.conversations
        store.conversations = self.read

    def read(self, openids):
        self.openids += openids
        return self.conversations(openids)


def test_a_sweep_reads_only_the_conversations_of_users_it_may_move(api, admin, store, agents):
    queued(api, store, U)                      # overdue by the sweep
    api.clock.advance(601)
    users = [f"oReads{n:02d}" for n in range(6)]
    for openid in users:
        with_agent(api, store, openid)
    reads = Reads(store)
    api.sandbox.clear_calls()
    report = reconciler(api, store, admin, max_checks=3).sweep()
    assert [call.query["openid"] for call in api.sandbox.calls_to(GETSESSION)] == [U, *users[:2]]
    assert sorted(reads.openids) == sorted([U, *users[:2]])    # not the four others
    assert [t.before.openid for t in report.transitions] == [U]


def test_a_user_whose_hand_off_ends_after_the_listing_is_not_asked_about(api, admin, store, agents):
    with_agent(api, store, U)
    with_agent(api, store, V)
    listing = store.in_handoff

    def listed_then_closed(limit: int = 1000):
        users = listing(limit)
        api.sandbox.close(U)
        store.apply(U, Change("close", api.clock(), agent=WANG))
        return users

    store.in_handoff = listed_then_closed
    api.sandbox.clear_calls()
    report = reconciler(api, store, admin).sweep()
    assert [call.query["openid"] for call in api.sandbox.calls_to(GETSESSION)] == [V]
    assert report.transitions == () and store.conversation(U).stage is Stage.BOT


# -- failures -------------------------------------------------------------------------------------------------

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
    def __init__(self, clock, fail_on: str):
        super().__init__(clock=clock)
        self.fail_on = fail_on

    def active(self, limit: int = 1000) -> List[Conversation]:
        if self.fail_on == "active":
            raise ConnectionError("the store is away")
        return super().active(limit)

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


# -- the wait queue ----------------------------------------------------------------------------------------

@pytest.fixture
def watch(api, admin) -> QueueWatch:
    return QueueWatch(admin, max_age=10, clock=api.clock)


def test_place_before_any_refresh_is_unknown(api, watch):
    assert watch.place(U) == (None, None) and watch.queue() is None and watch.age is None
    assert api.sandbox.calls_to(GETWAITCASE) == []


def test_place_of_listed_and_unlisted_users(api, watch):
    for openid in (U, V):
        api.sandbox.interact(openid, "message")
        api.sandbox.enqueue(openid)
    api.sandbox.interact(W, "message")
    watch.refresh()
    for _ in range(3):
        assert (watch.place(U), watch.place(V), watch.place(W)) == ((1, 2), (2, 2), (None, 2))
    assert len(api.sandbox.calls_to(GETWAITCASE)) == 1     # place() never calls the API
    assert watch.lists(V) and not watch.lists(W)


def test_users_past_the_first_hundred_have_no_place_but_a_count(api, watch):
    users = [f"oWaiting{n:03d}" for n in range(101)]
    for openid in users:
        api.sandbox.interact(openid, "message")
        api.sandbox.enqueue(openid)
    watch.refresh()
    assert watch.place(users[99]) == (100, 101) and watch.place(users[100]) == (None, 101)


@pytest.mark.parametrize("age, fresh, place", [
    (10, True, (1, 1)),
    (11, False, (1, 1)),            # not fresh enough to skip a session check, still good for a notice
    (30, False, (1, 1)),
    (31, False, (None, None)),      # past three times max_age: given up
])
def test_a_queue_ages(api, watch, age, fresh, place):
    api.sandbox.interact(U, "message")
    api.sandbox.enqueue(U)
    watch.refresh()
    api.clock.advance(age)
    assert watch.place(U) == place and watch.lists(U) is fresh


def test_a_failed_refresh_keeps_the_last_queue_and_logs_the_errcode(api, watch, caplog):
    api.sandbox.interact(U, "message")
    api.sandbox.enqueue(U)
    watch.refresh()
    api.clock.advance(20)
    api.sandbox.faults.fail_next(65400, times=3, path=GETWAITCASE)
    assert watch.refresh() is not None and watch.place(U) == (1, 1)
    assert "errcode 65400: customer service is not enabled" in caplog.text
    assert "keeping the queue read 20 s ago" in caplog.text
    api.clock.advance(11)
    assert watch.refresh() is None and watch.place(U) == (None, None)


def test_a_first_refresh_failing_knows_nothing(api, watch, caplog):
    api.sandbox.faults.fail_next(45009, path=GETWAITCASE)
    assert watch.refresh() is None and "none known yet" in caplog.text


def test_an_older_refresh_finishing_last_does_not_win(api, admin):
    class Slow(KfAdmin):
        """Answers the first read late: the queue as it was before the second read began."""
        def __init__(self):
            super().__init__(admin.client)
            self.first = threading.Event()
            self.release = threading.Event()

        def waiting(self):
            queue = super().waiting()
            if not self.first.is_set():
                self.first.set()
                self.release.wait(5)
            return queue

    slow = Slow()
    watch = QueueWatch(slow, max_age=10, clock=api.clock)
    earlier = threading.Thread(target=watch.refresh)
    earlier.start()
    assert slow.first.wait(5)
    api.sandbox.interact(U, "message")
    api.sandbox.enqueue(U)
    api.clock.advance(1)
    watch.refresh()
    slow.release.set()
    earlier.join(5)
    assert watch.place(U) == (1, 1)


@pytest.mark.parametrize("max_age", [0, -1, float("nan"), True, "10"])
def test_a_bad_max_age_is_refused(admin, max_age):
    with pytest.raises(ValueError, match="max_age must be a positive number of seconds"):
        QueueWatch(admin, max_age=max_age)


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
