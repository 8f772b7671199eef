"""A push claim of the memory replay store through each kind of hand-off store (HandoffStore.claim_for).

The memory hand-off store reads the sender, claims and stores the planned hand-off under one hold of its lock;
any other store (Redis, a failover store) takes the base class's steps one after another. Redis's own replay
store does not come here: it claims in one script (tests/test_conversations.py drives it through pushes).
"""
from __future__ import annotations

import threading
import time
from typing import List, Optional

import pytest

from kf_plugin.lifecycle import Change, Conversation, Stage, Transition, advance
from kf_plugin.state import HandoffStore, MemoryHandoffStore, MemoryReplayStore
from kf_plugin.state.base import Claim, Outcome, PushClaim
from kf_plugin.state.failover import Failover, FailoverHandoffStore

from .test_state import run_threads

U = "oUser0001"
# Real time: the Redis store keeps a record for a while after its request.
NOW = time.time()


def request(at: float, handoff_id: str) -> Change:
    return Change("request", at, reason="ask-for-human", handoff_id=handoff_id)


def planned(at: float, handoff_id: str) -> Transition:
    """The request a push plans for ``U`` with the bot (as the push path works it out before claiming)."""
    change = request(at, handoff_id)
    before = Conversation(U)
    after, record = advance(before, None, change)
    return Transition(change, before, after, record)


def transfer(key: str, handoff_id: str, answer: Optional[str] = "transfer") -> PushClaim:
    return PushClaim(key, 60.0, answer=answer, openid=U, handoff=planned(NOW, handoff_id))


@pytest.fixture(params=["memory", "failover", "redis"])
def handoffs(request) -> HandoffStore:
    """A hand-off store of each kind: the memory one (its own claim) and two that take the generic steps."""
    if request.param == "memory":
        return MemoryHandoffStore()
    if request.param == "failover":
        return FailoverHandoffStore(MemoryHandoffStore(), MemoryHandoffStore(), Failover("claim test"))
    import redis

    from kf_plugin.state.redis_handoffs import RedisHandoffStore
    return RedisHandoffStore(redis.Redis.from_url(request.getfixturevalue("redis_url")), "kf:{wxapp}:")


def test_a_user_with_the_bot_gets_the_answer_and_the_planned_hand_off(handoffs):
    replay = MemoryReplayStore(handoffs=handoffs)
    claim = replay.acquire(transfer("k1", "h1"))
    assert (claim.outcome, claim.answered, claim.conversation) == (Outcome.CLAIMED, True, Conversation(U))
    assert replay.wait("k1", 0) == "transfer"
    assert handoffs.conversation(U).handoff_id == "h1" and [r.id for r in handoffs.records(0)] == ["h1"]


def test_a_queued_user_gets_no_answer_and_no_second_hand_off(handoffs):
    handoffs.apply(U, request(NOW, "h0"))
    replay = MemoryReplayStore(handoffs=handoffs)
    claim = replay.acquire(transfer("k1", "h1"))
    assert (claim.outcome, claim.answered) == (Outcome.CLAIMED, False)
    assert claim.conversation == handoffs.conversation(U) and claim.conversation.stage is Stage.QUEUED
    assert replay.wait("k1", 0) is None   # pending: the caller runs the push for a queued user
    assert [r.id for r in handoffs.records(0)] == ["h0"]


@pytest.mark.parametrize("answer", [None, "transfer"], ids=["no-answer", "refused"])
def test_a_hand_off_is_stored_only_with_a_claim_that_stored_the_answer(handoffs, answer):
    replay = MemoryReplayStore(handoffs=handoffs)
    if answer is not None:
        replay.complete("k1", "earlier", 60.0)   # a retry: the claim finds the reply instead
    claim = replay.acquire(transfer("k1", "h1", answer=answer))
    assert (claim.outcome, claim.reply) == ((Outcome.CLAIMED, None) if answer is None else (Outcome.DONE, "earlier"))
    assert not claim.answered
    assert handoffs.conversation(U) == Conversation(U) and handoffs.records(0) == []


@pytest.mark.parametrize("handoffs", ["failover", "redis"], indirect=True)
def test_the_generic_steps_store_no_hand_off_over_a_change_that_came_between(handoffs):
    """Another change of the user between the read and the hand-off: the answer (worked out for a user with the
    bot) is given to the claim, the planned hand-off is not stored."""

    def take(push: PushClaim, given: Optional[str]) -> Optional[Claim]:
        handoffs.apply(U, request(NOW, "rival"))
        return None

    conversation, given, refused = handoffs.claim_for(U, transfer("k1", "mine"), take)
    assert (conversation, given, refused) == (Conversation(U), "transfer", None)
    assert handoffs.conversation(U).handoff_id == "rival" and [r.id for r in handoffs.records(0)] == ["rival"]


def test_the_memory_store_lets_no_change_of_the_user_between_read_claim_and_hand_off():
    handoffs = MemoryHandoffStore()
    rival = threading.Thread(target=lambda: handoffs.apply(U, request(NOW, "rival")))
    blocked: List[bool] = []

    def take(push: PushClaim, given: Optional[str]) -> Optional[Claim]:
        rival.start()
        rival.join(0.2)
        blocked.append(rival.is_alive())   # the rival's change waits for the lock the claim holds
        return None

    conversation, given, refused = handoffs.claim_for(U, transfer("k1", "mine"), take)
    rival.join()
    assert blocked == [True]
    assert (conversation, given, refused) == (Conversation(U), "transfer", None)
    assert handoffs.conversation(U).handoff_id == "mine" and [r.id for r in handoffs.records(0)] == ["mine"]


def test_twenty_claims_of_one_users_pushes_store_one_answer_and_its_hand_off():
    """Pushes of one user claimed at once, each with the transfer it planned: the claim that stores its answer
    stores its hand-off with it, and every other claim reads the user queued and is left pending."""
    handoffs = MemoryHandoffStore()
    replay = MemoryReplayStore(handoffs=handoffs)

    def claim(i: int) -> Claim:
        change = request(NOW + i / 1000, f"h{i:02d}")
        before = Conversation(U)
        after, record = advance(before, None, change)
        return replay.acquire(PushClaim(f"k{i}", 60.0, answer=f"transfer {i}", openid=U,
                                        handoff=Transition(change, before, after, record)))

    claims = run_threads(20, claim)
    assert all(c.outcome is Outcome.CLAIMED for c in claims)
    answered = [i for i, c in enumerate(claims) if c.answered]
    assert len(answered) == 1
    assert claims[answered[0]].conversation == Conversation(U)   # it read the user with the bot
    assert all(c.conversation.stage is Stage.QUEUED for c in claims if not c.answered)
    assert handoffs.conversation(U).handoff_id == f"h{answered[0]:02d}"
    assert [r.id for r in handoffs.records(0)] == [f"h{answered[0]:02d}"]
    assert replay.wait(f"k{answered[0]}", 0) == f"transfer {answered[0]}"
