"""The 48-hour window and quotas, with an injected clock."""
import gc

import pytest

from kf_plugin.errors import OutsideWindowError, QuotaExceededError
from kf_plugin.state import MemoryWindowStore
from kf_plugin.testing import message_xml
from kf_plugin.webhook import parse_push
from kf_plugin.window import DEFAULT_QUOTAS, Quota, WindowTracker, action_of

from .conftest import FakeClock, sample

HOUR = 3600


@pytest.fixture
def clock():
    return FakeClock(1_700_000_000)


@pytest.fixture
def tracker(clock):
    return WindowTracker(clock=clock)


def send_all(tracker, openid, attempts):
    """How many of ``attempts`` strict sends the tracker allows, consuming as it goes."""
    allowed = 0
    for _ in range(attempts):
        try:
            tracker.check(openid)
        except (OutsideWindowError, QuotaExceededError):
            continue
        tracker.sent(openid)
        allowed += 1
    return allowed


@pytest.mark.parametrize("pushed, action", [
    (dict(text="hi"), "message"),
    (dict(msg_type="image"), "message"),
    (dict(event="CLICK", key="K"), "click"),
    (dict(event="scancode_push", key="K"), "click"),
    (dict(event="scancode_waitmsg", key="K"), "click"),
    (dict(event="subscribe"), "follow"),
    (dict(event="subscribe", key="qrscene_1"), "follow"),
    (dict(event="SCAN", key="1"), "scan"),
    (dict(event="VIEW", key="http://x"), None),
    (dict(event="LOCATION"), None),
    (dict(event="kf_create_session"), None),
    (dict(event="unsubscribe"), None),
])
def test_which_pushes_grant_send_rights(pushed, action):
    assert action_of(parse_push(message_xml(**pushed))) == action


def test_samples_grant_as_documented():
    assert action_of(parse_push(sample("voice.xml"))) == "message"
    assert action_of(parse_push(sample("event_scancode_push.xml"))) == "click"
    assert action_of(parse_push(sample("event_view.xml"))) is None


@pytest.mark.parametrize("action, count, seconds", [
    ("message", 5, 48 * HOUR), ("click", 3, 60), ("follow", 3, 60), ("scan", 3, 60), ("payment", 0, 48 * HOUR),
])
def test_default_quotas_are_the_current_docs(action, count, seconds):
    assert DEFAULT_QUOTAS[action] == Quota(count, seconds)


@pytest.mark.parametrize("action, allowed", [("message", 5), ("click", 3), ("follow", 3), ("scan", 3)])
def test_each_interaction_allows_its_count(tracker, action, allowed):
    tracker.record_action("o", action)
    assert send_all(tracker, "o", 10) == allowed
    with pytest.raises(QuotaExceededError, match="45047.*refused before calling WeChat"):
        tracker.check("o")


def test_payment_grants_nothing_by_default(tracker):
    """WeChat cancelled the payment scenario (announcement of 2023-05-30)."""
    tracker.record_action("o", "payment")
    assert tracker.status("o").known is False
    tracker.record_action("o", "message")
    tracker.record_action("o", "payment")
    assert tracker.status("o").remaining == 5


def test_payment_can_be_granted_again_unlimited_for_48_hours(tracker, clock):
    tracker.configure({"payment": Quota(None, 48 * HOUR)})
    tracker.record_action("o", "payment")
    assert send_all(tracker, "o", 50) == 50
    assert tracker.status("o").remaining is None
    clock.advance(48 * HOUR + 1)
    with pytest.raises(OutsideWindowError, match="45015"):
        tracker.check("o")


@pytest.mark.parametrize("action, validity", [("message", 48 * HOUR), ("click", 60), ("scan", 60)])
def test_rights_expire(tracker, clock, action, validity):
    tracker.record_action("o", action)
    clock.advance(validity - 1)
    assert tracker.status("o").can_send
    clock.advance(1)
    status = tracker.status("o")
    assert (status.known, status.can_send, status.reason) == (True, False, "outside the 48-hour window")
    with pytest.raises(OutsideWindowError):
        tracker.check("o")


def test_grants_add_up_and_the_soonest_to_expire_is_used_first(tracker, clock):
    tracker.record_action("o", "message")     # 5 for 48 h
    tracker.record_action("o", "click")       # 3 for 60 s
    status = tracker.status("o")
    assert status.remaining == 8 and status.until == clock.now + 48 * HOUR
    assert send_all(tracker, "o", 3) == 3     # uses the click grant first
    clock.advance(61)                         # the click grant expired, the message grant is intact
    assert tracker.status("o").remaining == 5


def test_status_reports_remaining_and_until(tracker, clock):
    tracker.record_action("o", "message")
    tracker.sent("o")
    status = tracker.status("o")
    assert status.as_dict() == {"openid": "o", "known": True, "can_send": True, "remaining": 4,
                                "until": clock.now + 48 * HOUR, "reason": "within the window"}


def test_unknown_users_are_attempted_or_refused(clock):
    assert WindowTracker(clock=clock).check("nobody").known is False
    strict = WindowTracker(clock=clock, unknown_users="refuse")
    with pytest.raises(OutsideWindowError, match="unknown_users: refuse"):
        strict.check("nobody")


def test_wechat_refusals_correct_the_record(tracker):
    tracker.record_action("o", "message")
    tracker.refused("o", 45047)
    with pytest.raises(QuotaExceededError):
        tracker.check("o")
    tracker.record_action("p", "message")
    tracker.refused("p", 45015)
    with pytest.raises(OutsideWindowError):
        tracker.check("p")
    # An unknown user refused by WeChat becomes known: strict sends stop until they interact again.
    tracker.refused("q", 45015)
    assert tracker.status("q").known and not tracker.status("q").can_send
    tracker.record_action("q", "message")
    assert tracker.status("q").can_send


def test_other_errors_change_nothing(tracker):
    tracker.record_action("o", "message")
    tracker.refused("o", 45009)
    assert tracker.status("o").remaining == 5


def test_record_reads_the_sender_and_the_action(tracker):
    assert tracker.record(parse_push(message_xml(event="CLICK", key="K", sender="oA"))) == "click"
    assert tracker.status("oA").remaining == 3
    assert tracker.record(parse_push(message_xml(event="VIEW", key="u", sender="oB"))) is None
    assert not tracker.status("oB").known


def test_configurable_quotas(clock):
    tracker = WindowTracker(quotas={"message": Quota(20, 48 * HOUR)}, clock=clock)
    tracker.record_action("o", "message")
    assert send_all(tracker, "o", 30) == 20
    tracker.configure({"message": Quota(1, 60)})
    tracker.record_action("p", "message")
    assert send_all(tracker, "p", 3) == 1
    with pytest.raises(ValueError, match="no such interaction: chat"):
        tracker.configure({"chat": Quota(1, 1)})
    with pytest.raises(ValueError, match="attempt or refuse"):
        tracker.configure(unknown_users="maybe")


def test_memory_store_is_bounded():
    store = MemoryWindowStore(max_users=10)
    tracker = WindowTracker(store, clock=FakeClock())
    for i in range(50):
        tracker.record_action(f"o{i}", "message")
    assert len(store._records) == 10
    assert tracker.status("o49").known and not tracker.status("o0").known


def test_memory_store_records_cost_the_garbage_collector_nothing():
    store = MemoryWindowStore()
    tracker = WindowTracker(store, clock=FakeClock())
    gc.collect()
    before = len(gc.get_objects())
    for i in range(2000):
        tracker.record_action(f"o{i}", "message")
        tracker.record_action(f"o{i}", "click")
    store.consume("o1", tracker.clock())
    gc.collect()
    gc.collect()  # a record holding only untracked grants is untracked one collection after them
    # Tracked objects: not one per user or per grant (4,000 grants of 2,000 users); other threads of the test
    # process (earlier tests' background work) may allocate a few meanwhile, so the count has some room.
    assert len(gc.get_objects()) - before < 500
    assert not any(gc.is_tracked(rows) for rows in store._records.values())
    assert tracker.status("o1").remaining == 7 and tracker.status("o1999").remaining == 8


def test_concurrent_sends_never_overspend(tracker):
    import threading
    tracker.record_action("o", "message")
    barrier = threading.Barrier(20)
    used = []

    def send():
        barrier.wait()
        used.append(tracker.store.consume("o", tracker.clock()))

    threads = [threading.Thread(target=send) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(1 for grant in used if grant is not None) == 5


@pytest.mark.parametrize("backend", ["memory", "redis"])
def test_a_chatty_user_keeps_a_bounded_record(backend, clock, request):
    from kf_plugin.state.base import MAX_GRANTS_PER_USER
    if backend == "redis":
        import redis
        from kf_plugin.state.redis import RedisWindowStore
        store = RedisWindowStore(redis.Redis.from_url(request.getfixturevalue("redis_url")), "kf-test:")
    else:
        store = MemoryWindowStore()
    tracker = WindowTracker(store, clock=clock)
    for _ in range(10 * MAX_GRANTS_PER_USER):
        tracker.record_action("oChatty", "message")
        clock.advance(1)
    record = store.get("oChatty", clock())
    assert len(record.grants) == MAX_GRANTS_PER_USER
    assert min(g.expires_at for g in record.grants) == clock() - 1 - (MAX_GRANTS_PER_USER - 1) + 48 * HOUR
    assert tracker.status("oChatty").remaining == 5 * MAX_GRANTS_PER_USER


def test_a_pushed_interaction_whose_quota_is_zero_grants_nothing(tracker):
    tracker.configure({"message": Quota(0, 48 * HOUR)})
    message = parse_push(message_xml(text="hi", sender="oZero"))
    assert tracker.grant_for(message) is None   # the webhook records what this gives with the push's claim
    assert tracker.record(message) is None and tracker.status("oZero").known is False
