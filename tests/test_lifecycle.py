"""The pure hand-off model: every (stage × change) cell of advance(), stale and missed events, records, figures."""
from __future__ import annotations

import json
import re
from dataclasses import replace
from typing import Any, Dict, List, Optional

import pytest

from kf_plugin.lifecycle import (
    AGENT_REASON,
    CHANGE_KINDS,
    Change,
    Conversation,
    Ending,
    HandoffRecord,
    HandoffSummary,
    Stage,
    Transition,
    advance,
    new_handoff_id,
    summarize,
)

T = 1_700_000_000.0
U = "oUser"
A, B = "a@gh_test", "b@gh_test"
AT = T + 20   # when the changes of the table happen

# The three stages, each with its open record: queued at T, with agent A since T + 10.
CONVERSATIONS = {
    "bot": Conversation(U),
    "queued": Conversation(U, Stage.QUEUED, T, reason="ask", handoff_id="h1"),
    "with_agent": Conversation(U, Stage.WITH_AGENT, T + 10, agent=A, reason="ask", handoff_id="h1"),
}
RECORDS = {
    "bot": None,
    "queued": HandoffRecord("h1", U, "ask", T),
    "with_agent": HandoffRecord("h1", U, "ask", T, agent=A, accepted_at=T + 10),
}
# The changes of the table: (label, kind, agent). Each carries reason "stuck" and handoff_id "h2".
CHANGES = {
    "request": ("request", None), "accept-a": ("accept", A), "accept-b": ("accept", B),
    "accept-nobody": ("accept", None), "switch-a": ("switch", A), "switch-b": ("switch", B),
    "close-b": ("close", B), "cancel": ("cancel", None), "timeout": ("timeout", None), "lapse": ("lapse", None),
    "refuse": ("refuse", None),
}


def change(label: str, at: float = AT) -> Change:
    kind, agent = CHANGES[label]
    return Change(kind, at, agent=agent, reason="stuck", handoff_id="h2")


BACK_TO_BOT = Conversation(U, Stage.BOT, AT)
H1_WITH = {"id": "h1", "reason": "ask", "requested_at": T}
H2_FROM_BOT = {"id": "h2", "reason": AGENT_REASON, "requested_at": AT, "accepted_at": AT}

# stage, change → (the conversation after, the record's fields after; None: no record touched).
# A cell that is not listed leaves everything as it was.
TABLE: Dict[tuple, tuple] = {
    ("bot", "request"): (Conversation(U, Stage.QUEUED, AT, reason="stuck", handoff_id="h2"),
                         {"id": "h2", "reason": "stuck", "requested_at": AT}),
    ("bot", "accept-a"): (Conversation(U, Stage.WITH_AGENT, AT, A, AGENT_REASON, "h2"), {**H2_FROM_BOT, "agent": A}),
    ("bot", "accept-b"): (Conversation(U, Stage.WITH_AGENT, AT, B, AGENT_REASON, "h2"), {**H2_FROM_BOT, "agent": B}),
    ("bot", "accept-nobody"): (Conversation(U, Stage.WITH_AGENT, AT, None, AGENT_REASON, "h2"), H2_FROM_BOT),
    ("bot", "switch-a"): (Conversation(U, Stage.WITH_AGENT, AT, A, AGENT_REASON, "h2"), {**H2_FROM_BOT, "agent": A}),
    ("bot", "switch-b"): (Conversation(U, Stage.WITH_AGENT, AT, B, AGENT_REASON, "h2"), {**H2_FROM_BOT, "agent": B}),
    ("queued", "accept-a"): (Conversation(U, Stage.WITH_AGENT, AT, A, "ask", "h1"),
                             {**H1_WITH, "agent": A, "accepted_at": AT}),
    ("queued", "accept-b"): (Conversation(U, Stage.WITH_AGENT, AT, B, "ask", "h1"),
                             {**H1_WITH, "agent": B, "accepted_at": AT}),
    ("queued", "accept-nobody"): (Conversation(U, Stage.WITH_AGENT, AT, None, "ask", "h1"),
                                  {**H1_WITH, "accepted_at": AT}),
    ("queued", "switch-a"): (Conversation(U, Stage.WITH_AGENT, AT, A, "ask", "h1"),
                             {**H1_WITH, "agent": A, "accepted_at": AT}),
    ("queued", "switch-b"): (Conversation(U, Stage.WITH_AGENT, AT, B, "ask", "h1"),
                             {**H1_WITH, "agent": B, "accepted_at": AT}),
    # a close while queued: the accept was missed; the close names the agent
    ("queued", "close-b"): (BACK_TO_BOT, {**H1_WITH, "agent": B, "ended_at": AT, "outcome": "accepted"}),
    ("queued", "cancel"): (BACK_TO_BOT, {**H1_WITH, "ended_at": AT, "outcome": "cancelled"}),
    ("queued", "timeout"): (BACK_TO_BOT, {**H1_WITH, "ended_at": AT, "outcome": "timed_out"}),
    ("queued", "refuse"): (BACK_TO_BOT, {**H1_WITH, "ended_at": AT, "outcome": "refused"}),
    # another agent: a switch; the first accept's time stays the record's
    ("with_agent", "accept-b"): (Conversation(U, Stage.WITH_AGENT, AT, B, "ask", "h1"),
                                 {**H1_WITH, "agent": B, "accepted_at": T + 10}),
    ("with_agent", "switch-b"): (Conversation(U, Stage.WITH_AGENT, AT, B, "ask", "h1"),
                                 {**H1_WITH, "agent": B, "accepted_at": T + 10}),
    # the record keeps the agent who served the user, whatever the close names
    ("with_agent", "close-b"): (BACK_TO_BOT, {**H1_WITH, "agent": A, "accepted_at": T + 10, "ended_at": AT,
                                              "outcome": "accepted"}),
    ("with_agent", "lapse"): (BACK_TO_BOT, {**H1_WITH, "agent": A, "accepted_at": T + 10, "ended_at": AT,
                                            "outcome": "lapsed"}),
}
CELLS = [(stage, label) for stage in CONVERSATIONS for label in CHANGES]


def as_record(fields: Dict[str, Any]) -> HandoffRecord:
    return HandoffRecord.from_dict({"openid": U, **fields})


@pytest.mark.parametrize("stage,label", CELLS, ids=[f"{s}-{c}" for s, c in CELLS])
def test_every_stage_and_change(stage, label):
    conv, record = CONVERSATIONS[stage], RECORDS[stage]
    after, touched = advance(conv, record, change(label))
    expected = TABLE.get((stage, label))
    if expected is None:
        assert (after, touched) == (conv, None)
        return
    assert after == expected[0]
    assert touched == as_record(expected[1])


def test_the_table_covers_every_kind_and_lists_only_real_cells():
    assert {kind for kind, _ in CHANGES.values()} == set(CHANGE_KINDS)
    assert set(TABLE) <= set(CELLS)


@pytest.mark.parametrize("stage,label", [(s, c) for s, c in CELLS if s != "bot"])
def test_a_change_older_than_the_stage_is_stale(stage, label):
    conv, record = CONVERSATIONS[stage], RECORDS[stage]
    assert advance(conv, record, change(label, at=conv.since - 1)) == (conv, None)


@pytest.mark.parametrize("label", list(CHANGES))
def test_a_change_older_than_the_return_to_the_bot_is_stale(label):
    back = Conversation(U, Stage.BOT, T + 30)
    assert advance(back, None, change(label, at=T + 29)) == (back, None)


def test_a_change_in_the_same_second_as_the_stage_is_not_stale():
    """WeChat's times are whole seconds: two events of one second both count."""
    conv = CONVERSATIONS["queued"]
    after, record = advance(conv, RECORDS["queued"], Change("cancel", conv.since))
    assert after == Conversation(U, Stage.BOT, conv.since) and record is not None


def test_an_event_stamped_in_the_second_of_a_request_made_at_a_fraction_is_not_stale():
    """The request's time is our clock's (fractional), the accept's WeChat's CreateTime (whole seconds)."""
    conv, record = advance(Conversation(U), None, Change("request", T + 0.7, reason="ask", handoff_id="h1"))
    after, record = advance(conv, record, Change("accept", T, agent=A))
    assert (after.stage, after.agent, record.accepted_at) == (Stage.WITH_AGENT, A, T)
    assert advance(conv, None, Change("accept", T - 1, agent=A)) == (conv, None)


def test_a_whole_hand_off_request_accept_switch_close():
    conv, record = Conversation(U), None
    steps = [Change("request", T, reason="ask", handoff_id="h1"), Change("accept", T + 40, agent=A),
             Change("switch", T + 50, agent=B), Change("close", T + 90, agent=B)]
    for step in steps:
        conv, touched = advance(conv, record, step)
        record = touched or record
    assert conv == Conversation(U, Stage.BOT, T + 90)
    assert record == HandoffRecord("h1", U, "ask", T, agent=B, accepted_at=T + 40, ended_at=T + 90,
                                   outcome=Ending.ACCEPTED)
    assert record.waited == 40


def test_events_out_of_order_a_close_before_its_accept():
    conv, record = advance(Conversation(U), None, Change("request", T, reason="ask", handoff_id="h1"))
    conv, record = advance(conv, record, Change("close", T + 30, agent=A))
    assert conv.stage is Stage.BOT and record.outcome is Ending.ACCEPTED and record.agent == A
    assert advance(conv, record, Change("accept", T + 20, agent=A)) == (conv, None)


def test_a_redelivered_accept_after_a_switch_is_stale():
    conv, record = advance(Conversation(U), None, Change("accept", T, agent=A, handoff_id="h1"))
    conv, record = advance(conv, record, Change("switch", T + 5, agent=B))
    assert conv.agent == B
    assert advance(conv, record, Change("accept", T, agent=A)) == (conv, None)


def test_a_repeated_request_while_queued_is_not_a_second_hand_off():
    conv, record = advance(Conversation(U), None, Change("request", T, reason="ask", handoff_id="h1"))
    assert advance(conv, record, Change("request", T + 5, reason="ask", handoff_id="h2")) == (conv, None)


def test_a_request_without_an_id_gets_one_from_its_time():
    conv, record = advance(Conversation(U), None, Change("request", T, reason="ask"))
    assert record is not None and conv.handoff_id == record.id
    assert record.id.startswith(f"{int(T * 1000):013d}-")


@pytest.mark.parametrize("stage,label,outcome", [
    ("queued", "cancel", Ending.CANCELLED), ("queued", "close-b", Ending.ACCEPTED),
    ("with_agent", "lapse", Ending.LAPSED), ("with_agent", "close-b", Ending.ACCEPTED)])
def test_a_record_no_longer_kept_is_rebuilt_from_the_conversation(stage, label, outcome):
    conv = CONVERSATIONS[stage]
    after, record = advance(conv, None, change(label))
    assert after == BACK_TO_BOT
    accepted = conv.since if stage == "with_agent" else None
    agent = conv.agent if conv.agent is not None or label != "close-b" else B
    assert record == HandoffRecord("h1", U, "ask", conv.since, agent=agent, accepted_at=accepted, ended_at=AT,
                                   outcome=outcome)


def test_a_record_of_another_hand_off_is_not_the_open_one():
    conv = CONVERSATIONS["queued"]
    _, record = advance(conv, HandoffRecord("old", U, "earlier", T - 500), change("cancel"))
    assert record is not None and record.id == "h1" and record.reason == "ask"


def test_going_back_to_the_bot_clears_the_conversation():
    noticed = replace(CONVERSATIONS["queued"], noticed_at=T + 15)
    after, _ = advance(noticed, RECORDS["queued"], change("timeout"))
    assert after == Conversation(U, Stage.BOT, AT)


# -- Change, Transition, ids ---------------------------------------------------------------------------------

@pytest.mark.parametrize("kind,message", [
    ("acept", "no such change 'acept' (did you mean 'accept'?): the kinds are request, accept"),
    ("hello", "no such change 'hello': the kinds are"),
])
def test_an_unknown_change_is_refused(kind, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        Change(kind, T)


def test_a_request_needs_a_reason():
    with pytest.raises(ValueError, match="a request needs a reason"):
        Change("request", T)


@pytest.mark.parametrize("before,after,moved", [
    (CONVERSATIONS["bot"], CONVERSATIONS["queued"], True),
    (CONVERSATIONS["queued"], replace(CONVERSATIONS["queued"], noticed_at=T + 1), False),
    (CONVERSATIONS["with_agent"], replace(CONVERSATIONS["with_agent"], agent=B), True),
    (CONVERSATIONS["with_agent"], CONVERSATIONS["with_agent"], False),
])
def test_a_transition_moved_when_the_stage_or_the_agent_changed(before, after, moved):
    assert Transition(Change("lapse", T), before, after, None).moved is moved


def test_handoff_ids_sort_by_time():
    ids = [new_handoff_id(T + offset) for offset in (0.001, 0.5, 3, 3600)]
    assert ids == sorted(ids) and len(set(ids)) == 4
    assert all(re.fullmatch(r"\d{13}-[0-9a-f]{8}", i) for i in ids + [new_handoff_id()])
    assert new_handoff_id(T) != new_handoff_id(T)


# -- records -------------------------------------------------------------------------------------------------

FULL = HandoffRecord("h1", U, "投诉", T + 0.125, agent=A, accepted_at=T + 30.5, ended_at=T + 600.25,
                     outcome=Ending.LAPSED)


@pytest.mark.parametrize("record", [FULL, HandoffRecord("h2", U, "ask", T)])
def test_a_record_round_trips_through_json(record):
    data = json.loads(json.dumps(record.to_dict()))
    assert HandoffRecord.from_dict(data) == record


def test_a_record_has_stable_keys():
    assert FULL.to_dict() == {"id": "h1", "openid": U, "reason": "投诉", "requested_at": T + 0.125, "agent": A,
                              "accepted_at": T + 30.5, "ended_at": T + 600.25, "outcome": "lapsed"}


def test_a_record_ignores_keys_it_does_not_know():
    assert HandoffRecord.from_dict({**FULL.to_dict(), "added_later": 1}) == FULL


@pytest.mark.parametrize("change_to,message", [
    ({"id": None}, "a hand-off record needs id"),
    ({"requested_at": None, "reason": None}, "a hand-off record needs reason, requested_at"),
    ({"outcome": "won"}, "hand-off record 'h1': unknown outcome 'won' (one of accepted, cancelled"),
    ({"accepted_at": "soon"}, "hand-off record 'h1': accepted_at must be a unix time, not 'soon'"),
    ({"requested_at": True}, "requested_at must be a unix time, not True"),
])
def test_a_bad_record_is_refused_with_what_is_wrong(change_to, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        HandoffRecord.from_dict({**FULL.to_dict(), **change_to})


# -- figures -------------------------------------------------------------------------------------------------

def record(outcome: Optional[Ending], wait: Optional[float] = None, i: int = 0) -> HandoffRecord:
    return HandoffRecord(f"h{i}", U, "ask", T, agent=A if wait is not None else None,
                         accepted_at=None if wait is None else T + wait, outcome=outcome)


@pytest.mark.parametrize("records,expected", [
    ([], HandoffSummary(0, 0, 0, 0, 0, 0, 0, None, None, None)),
    # still queued: nothing decided yet
    ([record(None)], HandoffSummary(1, 0, 0, 0, 0, 0, 1, None, None, None)),
    # with an agent now: reached one, though open
    ([record(None, 12)], HandoffSummary(1, 0, 0, 0, 0, 0, 1, 1.0, 12, 12)),
    ([record(Ending.ACCEPTED, 10), record(Ending.CANCELLED), record(Ending.TIMED_OUT), record(Ending.REFUSED),
      record(Ending.LAPSED, 30), record(None)],
     HandoffSummary(6, 1, 1, 1, 1, 1, 1, 0.4, 20, 30)),
    # a close while queued (the accept was missed): accepted, without a wait
    ([record(Ending.ACCEPTED)], HandoffSummary(1, 1, 0, 0, 0, 0, 0, 1.0, None, None)),
])
def test_summaries(records: List[HandoffRecord], expected: HandoffSummary):
    assert summarize(records) == expected


def test_wait_percentiles_are_waits_that_occurred():
    waits = list(range(1, 21))  # 1..20 s
    summary = summarize(record(Ending.ACCEPTED, w, i) for i, w in enumerate(reversed(waits)))
    assert (summary.median_wait, summary.p90_wait) == (10.5, 18)
    assert summarize([record(Ending.ACCEPTED, 5)]).p90_wait == 5
    assert summary.to_dict()["count"] == 20 and set(summary.to_dict()) == {
        "count", "accepted", "cancelled", "timed_out", "lapsed", "refused", "open", "acceptance_rate",
        "median_wait", "p90_wait"}


def test_handoff_ids_made_in_a_forked_worker_differ_from_its_parents():
    import os

    from kf_plugin.lifecycle import new_handoff_id
    read, write = os.pipe()
    child = os.fork()
    if child == 0:   # a gunicorn worker forked from its master: the random part is reseeded
        os.write(write, " ".join(new_handoff_id(1.0) for _ in range(20)).encode())
        os._exit(0)
    os.waitpid(child, 0)
    theirs = set(os.read(read, 65536).decode().split())
    ours = {new_handoff_id(1.0) for _ in range(20)}
    assert len(theirs) == len(ours) == 20 and not theirs & ours
