"""Agents given by name (``wang@gh_test:busy:小王``) and the state names online, busy, offline."""
from __future__ import annotations

import pytest

from kf_plugin.testing.sandbox import ApiError, Sandbox
from kf_plugin.testing.sandbox.seeding import AgentSeed, agent_state, state_name, wechat_id_for


@pytest.mark.parametrize("spec, seed", [
    ("wang@gh_test", AgentSeed("wang@gh_test", "online", None)),
    ("wang@gh_test:busy", AgentSeed("wang@gh_test", "busy", None)),
    ("wang@gh_test:Offline:小王", AgentSeed("wang@gh_test", "offline", "小王")),
    ("wang@gh_test::小王", AgentSeed("wang@gh_test", "online", "小王")),
    ("wang@gh_test:online:a:b", AgentSeed("wang@gh_test", "online", "a:b")),
])
def test_a_spec_is_account_state_nickname(spec, seed):
    assert AgentSeed.parse(spec) == seed


@pytest.mark.parametrize("spec, message", [
    ("", "an agent needs its kf account, e.g. wang@gh_test"),
    (":online", "an agent needs its kf account, e.g. wang@gh_test"),
    ("wang@gh_test:ofline", "unknown agent state 'ofline': did you mean 'offline'? (states: online, busy, offline)"),
    ("wang@gh_test:away", "unknown agent state 'away' (states: online, busy, offline)"),
])
def test_a_bad_spec_says_what_is_wrong(spec, message):
    with pytest.raises(ValueError) as caught:
        AgentSeed.parse(spec)
    assert str(caught.value) == message


@pytest.mark.parametrize("name, online, status", [("online", True, 1), ("busy", True, 2), ("offline", False, 1)])
def test_states_round_trip(name, online, status):
    assert agent_state(name) == (online, status)
    assert state_name(online, status if online else 0) == name


@pytest.mark.parametrize("spec, online, status", [("wang@gh_test", True, 1), ("wang@gh_test:busy", True, 2),
                                                  ("wang@gh_test:offline", False, 0)])
def test_a_seeded_agent_is_bound_and_in_its_state(spec, online, status):
    sandbox = Sandbox()
    AgentSeed.parse(spec).add_to(sandbox)
    agent = sandbox.agents["wang@gh_test"]
    assert (agent["kf_nick"], agent["kf_wx"], agent["online"], agent["status"]) == (
        "wang", wechat_id_for("wang@gh_test"), online, status)
    sandbox.set_online("wang@gh_test", True)       # bound: an offline agent can come online later


def test_a_seed_wechat_refuses_leaves_nothing():
    sandbox = Sandbox()
    with pytest.raises(ApiError) as caught:
        AgentSeed("wang@gh_test", "online", "a nickname far over sixteen").add_to(sandbox)
    assert caught.value.errcode == 65403 and sandbox.agents == {}
