"""WeChat's retries: push keys, the replay store, the deduplicator, and all of it through the Flask app."""
from __future__ import annotations

import dataclasses
import logging
import threading
import time
from typing import List, Optional

import pytest
from wechatpy import parse_message

from kf_plugin import Keyword, MessageRouter
from kf_plugin.dedupe import Deduplicator, Known, push_key
from kf_plugin.state import MemoryReplayStore
from kf_plugin.testing import PushSigner, WeChatTestClient, message_xml

from .conftest import AES_KEY, APPID, TOKEN, FakeClock

T0 = 1_700_000_000
JOIN = 10  # seconds a test waits for its threads before declaring a hang


def parsed(xml: str):
    return parse_message(xml)


# -- push_key ----------------------------------------------------------------------------------------------

MESSAGE = dict(text="你好", sender="oUserA", account="gh_one", create_time=T0, msg_id=1001)
EVENT = dict(event="CLICK", key="MENU_A", sender="oUserA", account="gh_one", create_time=T0)


def test_push_key_is_the_same_for_every_delivery_of_a_message():
    first = push_key(parsed(message_xml(**MESSAGE)))
    assert first == push_key(parsed(message_xml(**MESSAGE)))
    assert isinstance(first, str) and first


def test_push_key_is_the_same_for_every_delivery_of_an_event():
    assert push_key(parsed(message_xml(**EVENT))) == push_key(parsed(message_xml(**EVENT)))


@pytest.mark.parametrize("change", [
    {"msg_id": 1002},
    {"sender": "oUserB"},
    {"account": "gh_two"},
    {"create_time": T0 + 1},
], ids=["msg-id", "sender", "account", "create-time"])
def test_push_key_differs_between_messages(change):
    assert push_key(parsed(message_xml(**MESSAGE))) != push_key(parsed(message_xml(**{**MESSAGE, **change})))


@pytest.mark.parametrize("change", [
    {"event": "VIEW"},
    {"key": "MENU_B"},
    {"key": None},
    {"sender": "oUserB"},
    {"account": "gh_two"},
    {"create_time": T0 + 1},
], ids=["event", "event-key", "no-event-key", "sender", "account", "create-time"])
def test_push_key_differs_between_events(change):
    assert push_key(parsed(message_xml(**EVENT))) != push_key(parsed(message_xml(**{**EVENT, **change})))


def test_push_key_keeps_a_message_and_an_event_of_the_same_second_apart():
    message = parsed(message_xml(text="x", sender="oUserA", account="gh_one", create_time=T0, msg_id=1))
    event = parsed(message_xml(event="subscribe", sender="oUserA", account="gh_one", create_time=T0))
    assert push_key(message) != push_key(event)


def test_push_key_of_colliding_msg_ids_from_different_users():
    a = parsed(message_xml(**MESSAGE))
    b = parsed(message_xml(**{**MESSAGE, "sender": "oUserB", "text": "另一条"}))
    assert push_key(a) != push_key(b)


# -- MemoryReplayStore --------------------------------------------------------------------------------------

class SignallingCondition(threading.Condition):
    """A Condition (on the store's lock) that tells when someone has started waiting on it (and so released
    its lock)."""

    def __init__(self, lock):
        super().__init__(lock)
        self.waiting = threading.Event()

    def wait(self, timeout=None):
        self.waiting.set()
        return super().wait(timeout)


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def store(clock):
    return MemoryReplayStore(clock=clock)


def test_claim_is_granted_once(store):
    assert store.claim("k", 60) is True
    assert store.claim("k", 60) is False
    assert store.claim("other", 60) is True


def test_complete_then_wait_returns_the_reply(store):
    store.claim("k", 60)
    store.complete("k", "<xml>reply</xml>", 60)
    assert store.wait("k", 0.05) == "<xml>reply</xml>"
    assert store.claim("k", 60) is False


def test_an_empty_reply_is_a_reply_not_an_absence(store):
    store.claim("k", 60)
    store.complete("k", "", 60)
    assert store.wait("k", 0.05) == ""
    assert store.claim("k", 60) is False


def test_wait_on_an_absent_key_returns_none(store):
    assert store.wait("nothing", 0.05) is None


def test_wait_times_out_on_a_pending_key(store):
    store.claim("k", 60)
    assert store.wait("k", 0.05) is None
    assert store.claim("k", 60) is False  # still pending after the timeout


def test_wait_returns_at_once_when_complete(store):
    store.claim("k", 60)
    store.complete("k", "done", 60)
    started = time.monotonic()
    assert store.wait("k", 30) == "done"
    assert time.monotonic() - started < 5


def test_release_frees_a_pending_claim(store):
    store.claim("k", 60)
    store.release("k")
    assert store.wait("k", 0.05) is None
    assert store.claim("k", 60) is True


def test_release_does_not_drop_a_completed_reply(store):
    store.claim("k", 60)
    store.complete("k", "kept", 60)
    store.release("k")
    assert store.wait("k", 0.05) == "kept"


def test_release_of_an_unknown_key_is_harmless(store):
    store.release("unknown")
    assert store.claim("unknown", 60) is True


def test_pending_claim_expires(store, clock):
    store.claim("k", 10)
    clock.advance(9.9)
    assert store.claim("k", 10) is False
    clock.advance(0.2)
    assert store.claim("k", 10) is True  # the worker holding it died: the key is free again


def test_completed_reply_expires(store, clock):
    store.claim("k", 60)
    store.complete("k", "r", 60)
    clock.advance(59.9)
    assert store.wait("k", 0.05) == "r"
    clock.advance(0.2)
    assert store.wait("k", 0.05) is None
    assert len(store) == 0
    assert store.claim("k", 60) is True


def test_complete_restarts_the_ttl(store, clock):
    store.claim("k", 60)
    clock.advance(50)
    store.complete("k", "r", 60)
    clock.advance(50)
    assert store.wait("k", 0.05) == "r"


def test_len_counts_live_entries(store, clock):
    for i in range(5):
        store.claim(f"k{i}", 60)
    assert len(store) == 5
    clock.advance(61)
    assert len(store) == 0


@pytest.mark.parametrize("max_entries", [1, 3, 10])
def test_max_entries_bounds_the_store(clock, max_entries):
    store = MemoryReplayStore(clock=clock, max_entries=max_entries)
    for i in range(3 * max_entries + 5):
        store.claim(f"k{i}", 60)
        store.complete(f"k{i}", f"r{i}", 60)
        assert len(store) <= max_entries
        assert store.wait(f"k{i}", 0) == f"r{i}"  # the newest entry is never the one evicted
    last = 3 * max_entries + 4
    kept = [i for i in range(last + 1) if store.wait(f"k{i}", 0) is not None]
    assert kept == list(range(last + 1 - max_entries, last + 1))  # the oldest went first


def test_a_waiter_in_another_thread_is_woken_by_complete(store):
    store._changed = SignallingCondition(store._lock)
    store.claim("k", 60)
    result: List[Optional[str]] = []
    waiter = threading.Thread(target=lambda: result.append(store.wait("k", 60)))
    waiter.start()
    assert store._changed.waiting.wait(JOIN)
    store.complete("k", "woken", 60)
    waiter.join(JOIN)
    assert not waiter.is_alive()
    assert result == ["woken"]


def test_a_waiter_in_another_thread_is_woken_by_release(store):
    store._changed = SignallingCondition(store._lock)
    store.claim("k", 60)
    result: List[Optional[str]] = []
    waiter = threading.Thread(target=lambda: result.append(store.wait("k", 60)))
    waiter.start()
    assert store._changed.waiting.wait(JOIN)
    store.release("k")
    waiter.join(JOIN)
    assert not waiter.is_alive()
    assert result == [None]


# -- Deduplicator ---------------------------------------------------------------------------------------------

class CountingStore(MemoryReplayStore):
    """A memory store that counts callers of :meth:`wait`, so tests can act once N retries are waiting."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.waiters = 0
        self.counted = threading.Condition()

    def wait(self, key, timeout):
        with self.counted:
            self.waiters += 1
            self.counted.notify_all()
        return super().wait(key, timeout)

    def until_waiting(self, count: int, timeout: float = JOIN) -> bool:
        with self.counted:
            return self.counted.wait_for(lambda: self.waiters >= count, timeout)


class Producer:
    def __init__(self, reply: str = "<xml>reply</xml>"):
        self.reply = reply
        self.calls = 0
        self.lock = threading.Lock()

    def __call__(self, conversation=None) -> str:
        with self.lock:
            self.calls += 1
        return self.reply


def test_serial_retries_produce_once(store):
    dedupe = Deduplicator(store)
    produce = Producer()
    answers = [dedupe.run("k", produce) for _ in range(3)]
    assert answers == ["<xml>reply</xml>"] * 3
    assert produce.calls == 1


def test_retries_of_a_push_answered_with_success_do_not_produce_again(store):
    dedupe = Deduplicator(store)
    produce = Producer("")
    assert [dedupe.run("k", produce) for _ in range(3)] == ["", "", ""]
    assert produce.calls == 1


def test_different_keys_produce_separately(store):
    dedupe = Deduplicator(store)
    produce = Producer()
    dedupe.run("a", produce)
    dedupe.run("b", produce)
    assert produce.calls == 2


def test_deduplicator_ttl_bounds_the_replay(clock):
    dedupe = Deduplicator(MemoryReplayStore(clock=clock), ttl=5)
    produce = Producer()
    dedupe.run("k", produce)
    clock.advance(4.9)
    dedupe.run("k", produce)
    assert produce.calls == 1
    clock.advance(0.2)
    dedupe.run("k", produce)
    assert produce.calls == 2


def test_concurrent_deliveries_produce_exactly_once(clock):
    threads_count = 20
    store = CountingStore(clock=clock)
    dedupe = Deduplicator(store, wait=JOIN)
    barrier = threading.Barrier(threads_count)
    calls = []
    all_waiting = []

    def produce(conversation=None):
        calls.append(threading.current_thread().name)
        all_waiting.append(store.until_waiting(threads_count - 1))
        return "<xml>only once</xml>"

    results: List[str] = []
    errors: List[BaseException] = []

    def deliver():
        try:
            barrier.wait(JOIN)
            results.append(dedupe.run("same-push", produce))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=deliver) for _ in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(JOIN * 2)
    assert not any(thread.is_alive() for thread in threads)
    assert errors == []
    assert len(calls) == 1
    assert all_waiting == [True]
    assert results == ["<xml>only once</xml>"] * threads_count


def test_a_known_reply_is_stored_with_the_claim_and_what_follows_it_runs_once(store):
    produced, followed = [], []
    dedupe = Deduplicator(store, ttl=60, wait=1)
    known = Known("<xml>known</xml>", then=lambda: followed.append(1))
    answers = [dedupe.run("k", lambda _: produced.append(1) or "produced", known=known) for _ in range(3)]
    assert answers == ["<xml>known</xml>"] * 3
    assert (produced, followed) == ([], [1])


def test_a_known_reply_whose_follow_up_fails_still_goes_out(store, caplog):
    def fail() -> None:
        raise RuntimeError("the notice could not be queued")
    dedupe = Deduplicator(store, ttl=60, wait=1)
    assert dedupe.run("k", lambda _: "produced", known=Known("known", then=fail)) == "known"
    assert "the work that follows a push's reply failed" in caplog.text


def test_a_known_reply_is_produced_as_usual_when_the_store_leaves_the_claim_pending(store):
    class Pending(MemoryReplayStore):     # a store that does not store answers with its claims
        def acquire(self, push):
            return super().acquire(dataclasses.replace(push, answer=None))
    dedupe = Deduplicator(Pending(), ttl=60, wait=1)
    followed = []
    assert dedupe.run("k", lambda _: "produced", known=Known("known", then=lambda: followed.append(1))) == "produced"
    assert followed == []      # produce does that work itself


def test_produce_raising_releases_the_claim(store):
    dedupe = Deduplicator(store)

    def failing(conversation=None):
        raise RuntimeError("handler failed")

    with pytest.raises(RuntimeError, match="handler failed"):
        dedupe.run("k", failing)
    produce = Producer()
    assert dedupe.run("k", produce) == "<xml>reply</xml>"
    assert produce.calls == 1
    assert dedupe.run("k", produce) == "<xml>reply</xml>"
    assert produce.calls == 1


def test_a_waiting_retry_runs_the_handler_when_the_first_delivery_fails(clock):
    store = CountingStore(clock=clock)
    dedupe = Deduplicator(store, wait=JOIN)
    in_produce = threading.Event()
    first_errors: List[BaseException] = []
    saw_the_retry_waiting = []

    def failing(conversation=None):
        in_produce.set()
        saw_the_retry_waiting.append(store.until_waiting(1))
        raise RuntimeError("first delivery failed")

    def first():
        try:
            dedupe.run("k", failing)
        except RuntimeError as exc:
            first_errors.append(exc)

    thread = threading.Thread(target=first)
    thread.start()
    assert in_produce.wait(JOIN)
    produce = Producer("<xml>second</xml>")
    assert dedupe.run("k", produce) == "<xml>second</xml>"  # woken by the release, then runs it itself
    thread.join(JOIN)
    assert not thread.is_alive()
    assert saw_the_retry_waiting == [True]
    assert len(first_errors) == 1
    assert produce.calls == 1


def test_still_pending_after_the_wait_bound_answers_success_and_warns(store, caplog):
    dedupe = Deduplicator(store, wait=0.05)
    assert store.claim("k", 60)  # another worker is still handling the push
    produce = Producer()
    with caplog.at_level(logging.WARNING, logger="kf_plugin.dedupe"):
        assert dedupe.run("k", produce) == ""
    assert produce.calls == 0
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and r.name == "kf_plugin.dedupe"]
    assert len(warnings) == 1
    assert "still being handled" in warnings[0].getMessage()


# -- through the Flask app --------------------------------------------------------------------------------------

class CountingHandler:
    """A bot handler whose reply changes with every call, so a second run shows."""

    def __init__(self, gate: Optional[threading.Event] = None, before=None):
        self.calls = 0
        self.lock = threading.Lock()
        self.entered = threading.Event()
        self.gate = gate
        self.before = before
        self.before_results: List = []

    def __call__(self, message):
        with self.lock:
            self.calls += 1
            number = self.calls
        self.entered.set()
        if self.before is not None:
            self.before_results.append(self.before())
        if self.gate is not None:
            assert self.gate.wait(JOIN)
        return f"reply #{number}"


def bot(handler) -> MessageRouter:
    router = MessageRouter("bot")
    router.add(Keyword("dup"), handler)
    return router


@pytest.mark.parametrize("mode", ["plain", "safe"])
def test_serial_redeliveries_through_the_app(make_app, mode):
    handler = CountingHandler()
    config = {"KF_ENCODING_AES_KEY": AES_KEY} if mode == "safe" else {}
    app = make_app(router=bot(handler), **config)
    client = WeChatTestClient(app)
    query, body = client.signer.sign(message_xml(text="dup please"))
    answers = [client.post(query, body) for _ in range(3)]
    assert [a.status for a in answers] == [200, 200, 200]
    assert [a.content for a in answers] == ["reply #1"] * 3
    assert len({a.xml for a in answers}) == 1  # byte-identical replies, CreateTime included
    assert handler.calls == 1


@pytest.mark.parametrize("mode", ["plain", "safe"])
def test_serial_redeliveries_of_an_event_through_the_app(make_app, mode):
    config = {"KF_ENCODING_AES_KEY": AES_KEY} if mode == "safe" else {}
    app = make_app(**config)
    seen = []
    app.extensions["kf_plugin"].plugin.router.before(lambda message: seen.append(message) and None)
    client = WeChatTestClient(app)
    query, body = client.signer.sign(message_xml(event="CLICK", key="CONTACT_VIP"))
    answers = [client.post(query, body) for _ in range(3)]
    assert [a.kf_account for a in answers] == ["vip1@gh_example"] * 3
    assert len({a.xml for a in answers}) == 1
    assert len(seen) == 1


def test_success_is_replayed_without_running_the_handler_again(make_app):
    calls = []
    router = MessageRouter("bot")
    router.add(Keyword("quiet"), lambda message: calls.append(1))  # returns None → "success"
    app = make_app(router=router)
    client = WeChatTestClient(app)
    query, body = client.signer.sign(message_xml(text="quiet"))
    assert [client.post(query, body).body for _ in range(3)] == ["success"] * 3
    assert calls == [1]


def test_different_pushes_are_not_deduplicated(make_app):
    handler = CountingHandler()
    client = WeChatTestClient(make_app(router=bot(handler)))
    first = client.send_text("dup", msg_id=1, create_time=T0)
    second = client.send_text("dup", msg_id=2, create_time=T0)
    assert (first.content, second.content) == ("reply #1", "reply #2")
    assert handler.calls == 2


def app_with_store(make_app, store, how: str, **kwargs):
    """An app whose webhook uses ``store``: passed as the ``replay_store`` option, or put in place afterwards."""
    if how == "option":
        app = make_app(plugin_options={"replay_store": store}, **kwargs)
        assert webhook_of(app).dedupe.store is store, "the replay_store option was not used"
    else:
        app = make_app(**kwargs)
        webhook_of(app).dedupe.store = store
    return app


def webhook_of(app):
    return app.extensions["kf_plugin"].webhook


@pytest.mark.parametrize("store", [MemoryReplayStore(), CountingStore(), MemoryReplayStore(clock=FakeClock())],
                         ids=["default", "counting", "fake-clock"])
def test_the_replay_store_option_is_used(make_app, store):
    app = make_app(plugin_options={"replay_store": store})
    assert webhook_of(app).dedupe.store is store


@pytest.mark.parametrize("how", ["option", "swapped-in"])
@pytest.mark.parametrize("mode", ["plain", "safe"])
def test_concurrent_redeliveries_through_the_app(make_app, mode, how):
    deliveries = 10
    store = CountingStore()
    handler = CountingHandler(before=lambda: store.until_waiting(deliveries - 1))
    config = {"KF_ENCODING_AES_KEY": AES_KEY} if mode == "safe" else {}
    app = app_with_store(make_app, store, how, router=bot(handler), **config)
    signer = PushSigner(TOKEN, config.get("KF_ENCODING_AES_KEY"), APPID)
    query, body = signer.sign(message_xml(text="dup together"))
    barrier = threading.Barrier(deliveries)
    answers = []
    errors: List[BaseException] = []

    def deliver():
        try:
            client = WeChatTestClient(app, signer)  # its own app.test_client()
            barrier.wait(JOIN)
            answers.append(client.post(query, body))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=deliver) for _ in range(deliveries)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(JOIN * 2)
    assert not any(thread.is_alive() for thread in threads)
    assert errors == []
    assert handler.calls == 1
    assert handler.before_results == [True]  # every other delivery was waiting while the handler ran
    assert store.waiters == deliveries - 1
    assert [a.status for a in answers] == [200] * deliveries
    assert [a.content for a in answers] == ["reply #1"] * deliveries
    assert len({a.xml for a in answers}) == 1


def test_a_retry_waits_no_longer_than_kf_dedupe_wait(make_app):
    gate = threading.Event()
    handler = CountingHandler(gate=gate)
    app = make_app(router=bot(handler), KF_DEDUPE_WAIT=0.05)
    signer = PushSigner(TOKEN)
    query, body = signer.sign(message_xml(text="dup slow"))
    first: List = []
    thread = threading.Thread(target=lambda: first.append(WeChatTestClient(app, signer).post(query, body)))
    thread.start()
    try:
        assert handler.entered.wait(JOIN)
        retry = WeChatTestClient(app, signer).post(query, body)
        assert retry.status == 200
        assert retry.body == "success"
    finally:
        gate.set()
        thread.join(JOIN)
    assert not thread.is_alive()
    assert first[0].content == "reply #1"
    assert handler.calls == 1
    # Once the first delivery is done, a later retry gets its reply.
    assert WeChatTestClient(app, signer).post(query, body).content == "reply #1"


@pytest.mark.parametrize("how", ["option", "swapped-in"])
@pytest.mark.parametrize("config, still_replayed, rerun_after", [
    ({}, 30, 300.5),
    ({}, 299.5, 300.5),
    ({"KF_DEDUPE_TTL": 10, "KF_MAX_CLOCK_SKEW": 0}, 9.5, 10.5),
    ({"KF_MAX_CLOCK_SKEW": 0}, 59.5, 60.5),
    ({"KF_DEDUPE_TTL": 900}, 899.5, 900.5),
], ids=["default-30s", "default-just-before-the-skew-window", "custom-ttl-no-skew-check", "default-ttl-no-skew-check",
        "ttl-longer-than-the-skew-window"])
def test_ttl_expiry_through_the_app(make_app, config, still_replayed, rerun_after, how):
    fake = FakeClock()
    handler = CountingHandler()
    app = app_with_store(make_app, MemoryReplayStore(clock=fake), how, router=bot(handler), **config)
    client = WeChatTestClient(app)
    query, body = client.signer.sign(message_xml(text="dup ttl"))
    assert client.post(query, body).content == "reply #1"
    fake.advance(still_replayed)
    assert client.post(query, body).content == "reply #1"
    assert handler.calls == 1
    fake.advance(rerun_after - still_replayed)
    assert client.post(query, body).content == "reply #2"
    assert handler.calls == 2


# -- a message without MsgId; one signed query, one body ------------------------------------------------------

def without_msg_id(text: str, create_time: int = T0) -> str:
    xml = message_xml(text=text, create_time=create_time, msg_id=1)
    return xml.replace("<MsgId>1</MsgId>", "")


def test_push_key_of_messages_without_msg_id_tells_their_contents_apart():
    first, second = parsed(without_msg_id("dup 第一条")), parsed(without_msg_id("dup 第二条"))
    assert "MsgId" not in first._data
    assert push_key(first) != push_key(second)
    assert push_key(first) == push_key(parsed(without_msg_id("dup 第一条")))


def test_two_texts_without_msg_id_in_one_second_get_their_own_replies(make_app):
    handler = CountingHandler()
    client = WeChatTestClient(make_app(router=bot(handler)))
    answers = [client.send(without_msg_id(text)).content for text in ("dup 第一条", "dup 第二条")]
    assert answers == ["reply #1", "reply #2"]
    assert handler.calls == 2


def test_one_signed_query_does_not_carry_a_second_body(make_app):
    handler = CountingHandler()
    client = WeChatTestClient(make_app(router=bot(handler)))
    query, body = client.signer.sign(message_xml(text="dup genuine", msg_id=4242))
    assert client.post(query, body).content == "reply #1"
    forged = message_xml(text="dup forged", msg_id=4243).encode("utf-8")
    refused = client.post(query, forged)
    assert refused.status == 403 and "different body" in refused.body
    assert client.post(query, body).content == "reply #1"   # the genuine retry still gets its reply
    assert handler.calls == 1


def test_a_signed_query_is_bound_to_its_body_across_workers(make_app, redis_url):
    handler = CountingHandler()
    workers = [make_app(router=bot(handler), KF_REDIS_URL=redis_url) for _ in range(2)]
    query, body = PushSigner(TOKEN).sign(message_xml(text="dup genuine", msg_id=4244))
    assert WeChatTestClient(workers[0]).post(query, body).content == "reply #1"
    refused = WeChatTestClient(workers[1]).post(query, message_xml(text="dup forged", msg_id=4245).encode("utf-8"))
    assert refused.status == 403
    assert handler.calls == 1


def test_an_identical_replay_within_the_clock_skew_window_does_not_run_again(make_app):
    clock = FakeClock(T0)
    handler = CountingHandler()
    app = make_app(router=bot(handler), plugin_options={"replay_store": MemoryReplayStore(clock=clock),
                                                        "clock": clock})
    client = WeChatTestClient(app, PushSigner(TOKEN, clock=clock))
    query, body = client.signer.sign(message_xml(text="dup captured", msg_id=4246))
    assert client.post(query, body).content == "reply #1"
    clock.advance(65)   # past KF_DEDUPE_TTL, within KF_MAX_CLOCK_SKEW
    assert client.post(query, body).content == "reply #1"
    assert handler.calls == 1


# -- Redis calls per push -------------------------------------------------------------------------------------

class CountingRedis:
    """Builds a redis-py client that notes every command it sends (``commands``)."""

    @staticmethod
    def connect(url: str):
        import redis

        class Counting(redis.Redis):
            commands: List[str] = []

            def execute_command(self, *args, **options):
                self.commands.append(str(args[0]).upper())
                return super().execute_command(*args, **options)
        return Counting.from_url(url, socket_timeout=1, socket_connect_timeout=1)


@pytest.mark.parametrize("text, calls", [
    ("转人工", ["EVALSHA"]),           # a kf rule's transfer: stored with the claim
    ("你好", ["EVALSHA", "SET"]),      # the bot's own handler: the claim, then its reply
], ids=["kf-rule", "bot-handler"])
def test_redis_calls_per_push(make_app, redis_url, text, calls):
    redis_client = CountingRedis.connect(redis_url)
    router = MessageRouter("bot")
    router.add(Keyword("你好"), lambda message: "你好！")
    client = WeChatTestClient(make_app(router=router, plugin_options={"redis": redis_client}))
    client.send_text(text, msg_id=1, sender="oFirstUser")   # loads the scripts
    redis_client.commands.clear()
    query, body = client.signer.sign(message_xml(text=text, msg_id=2, sender="oSecondUser"))
    first = client.post(query, body)
    assert redis_client.commands == calls, redis_client.commands
    redis_client.commands.clear()
    assert client.post(query, body).body == first.body   # a retry to the same worker: its own memory answers
    assert redis_client.commands == []
