"""The hand-off sweep makes up for the session events the bot missed, asking WeChat (``getsession``) about at
most ``max_checks`` users a sweep and reading the conversations of only those it may move (on both store
kinds: memory, and the test database of ``redis_url``: skipped without Redis, except in CI)."""
from __future__ import annotations

from typing import List

import pytest

from kf_plugin.admin import Session
from kf_plugin.lifecycle import Change, Conversation, Ending, Stage
from kf_plugin.reconcile import QueueWatch, session_change
from kf_plugin.state import HandoffStore

from .reconcile_support import GETSESSION, LI, WANG, Hook, U, V, queued, reconciler, record_of, with_agent

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
