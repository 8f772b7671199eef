"""WeChat's retries answered exactly once.

N pushes — text messages and events, some sharing a sender, a MsgId or a CreateTime with another — are each
delivered three times: (i) one after another, (ii) all deliveries of all pushes interleaved over many threads,
each with its own test client, (iii) spread over three real server processes sharing one Redis. Every time the
bot's handlers run exactly N times, once per push, and the three answers to each push are identical (in safe
mode: identical once decrypted; each delivery is encrypted and signed afresh, as WeChat's retries are).
"""
from __future__ import annotations

import collections
import multiprocessing
import os
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Tuple

import pytest
import redis
import requests
import xmltodict

from kf_plugin import EVENT, TEXT, MessageRouter
from kf_plugin.testing import PushSigner, WeChatTestClient, message_xml

from .conftest import AES_KEY, APPID, TOKEN

N = 50
DELIVERIES = 3
SPAWN = multiprocessing.get_context("spawn")


# -- the pushes ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Push:
    id: int
    xml: str
    key: Tuple[str, ...]        # what identifies the push to the bot: docs/webhook.md's dedupe key, less the account
    answers: bool               # the handler answers (False: it returns None and the push gets "success")


def push_identity(data: Dict[str, Any]) -> Tuple[str, ...]:
    """Messages: sender, MsgId, CreateTime. Events: sender, CreateTime, Event, EventKey."""
    if data.get("MsgId"):
        return ("m", data["FromUserName"], data["MsgId"], data["CreateTime"])
    return ("e", data["FromUserName"], data["CreateTime"], data.get("Event") or "", data.get("EventKey") or "")


def make_pushes(n: int = N) -> List[Push]:
    """``n`` distinct pushes, alternating messages and events.

    They are close to one another on purpose: messages of one sender, the same MsgId from different senders,
    events of one sender with one CreateTime differing only in Event or EventKey — each is a push of its own.
    """
    now = int(time.time())
    base_id = random.Random(now).randrange(10**9, 10**12)
    pushes = []
    for i in range(n):
        quiet = i % 7 == 3                                    # the handler returns None: "success"
        j = i // 2
        if i % 2 == 0:
            # Two senders' messages share each MsgId.
            xml = message_xml(text=f"message {i}" + (" quiet" if quiet else ""), sender=f"oExactlyOnceM{j:03d}",
                              msg_id=base_id + j // 2, create_time=now)
        else:
            # Pairs of events of one sender at one CreateTime, differing only in Event or only in EventKey.
            event, key = [("CLICK", f"MENU_{j // 2}"), ("VIEW", f"MENU_{j // 2}"), ("CLICK", f"MENU_{j // 2}"),
                          ("CLICK", f"MENU_{j // 2}_B")][j % 4]
            if j % 10 == 9:
                event, key, quiet = "subscribe", "", False
            xml = message_xml(event=event, key=key + ("_quiet" if quiet else ""), sender=f"oExactlyOnceE{j // 2:03d}",
                              create_time=now)
        pushes.append(Push(i, xml, push_identity(_fields(xml)), answers=not quiet))
    keys = [p.key for p in pushes]
    assert len(set(keys)) == n, "the pushes must be distinct"
    return pushes


def _fields(xml: str) -> Dict[str, Any]:
    return dict(xmltodict.parse(xml)["xml"])


def answer_for(message: Any, run: int) -> Optional[str]:
    """What the bots here answer: the push's identity and the run that answered, unless the push is quiet."""
    data = message._data
    said = data.get("Content") if data.get("MsgType") == "text" else data.get("EventKey")
    if "quiet" in (said or ""):
        return None
    return f"answer to {'|'.join(push_identity(data))} run {run} by {os.getpid()}"


class Runs:
    """Counts the handler's runs per push, in this process."""

    def __init__(self, delay: float = 0.0):
        self.delay = delay
        self.counts: "collections.Counter[Tuple[str, ...]]" = collections.Counter()
        self.running: Dict[Tuple[str, ...], Tuple[float, float]] = {}   # key → (started, finished)
        self.total = 0
        self.lock = threading.Lock()

    def router(self) -> MessageRouter:
        router = MessageRouter("exactly once")
        router.add(TEXT, self.handle)
        router.add(EVENT, self.handle)
        return router

    def handle(self, message: Any) -> Optional[str]:
        key = push_identity(message._data)
        started = time.monotonic()
        with self.lock:
            self.counts[key] += 1
            self.total += 1
            run = self.total
        if self.delay:
            time.sleep(self.delay)     # retries arrive while this first delivery is still being handled
        with self.lock:
            self.running[key] = (started, time.monotonic())
        return answer_for(message, run)


def comparable(signer: PushSigner, status: int, body: str, content_type: str) -> Tuple[int, str, str]:
    """An answer as the bot said it: a safe-mode reply decrypted (its envelope differs by design)."""
    return status, content_type, signer.open_reply(body) if status == 200 else body


def check(pushes: List[Push], answers: Dict[int, List[Tuple[int, str, str]]], runs: Callable[[Push], int],
          total_runs: int) -> None:
    assert total_runs == len(pushes), f"{total_runs} handler runs for {len(pushes)} pushes"
    for push in pushes:
        assert runs(push) == 1, f"push {push.id} {push.key}: the handler ran {runs(push)} times"
        got = answers[push.id]
        assert len(got) == DELIVERIES
        assert got[0][0] == 200, got[0]
        assert got.count(got[0]) == DELIVERIES, f"push {push.id}: the answers differ: {got}"
        if push.answers:
            assert f"answer to {'|'.join(push.key)} run " in got[0][2], got[0]
        else:
            assert got[0][2] == "success"


def plan(pushes: List[Push], seed: int = 20261124) -> List[Tuple[Push, int]]:
    """All deliveries, interleaved: a seeded shuffle, with a third of the pushes' deliveries side by side so
    that retries surely meet a first delivery still running."""
    rng = random.Random(seed)
    together = [p for p in pushes if p.id % 3 == 0]
    spread = [(p, d) for p in pushes if p.id % 3 != 0 for d in range(DELIVERIES)]
    rng.shuffle(spread)
    for p in together:
        at = rng.randrange(len(spread) + 1)
        spread[at:at] = [(p, d) for d in range(DELIVERIES)]
    return spread


MODES = pytest.mark.parametrize("mode", ["plain", "safe"])
STORES = pytest.mark.parametrize("store", ["memory", "redis"])


def app_for(make_app, request, mode: str, store: str, runs: Runs):
    config: Dict[str, Any] = {}
    if mode == "safe":
        config["KF_ENCODING_AES_KEY"] = AES_KEY
    if store == "redis":
        config["KF_REDIS_URL"] = request.getfixturevalue("redis_url")
    app = make_app(router=runs.router(), **config)
    request.addfinalizer(app.extensions["kf_plugin"].plugin.shutdown)
    return app


# -- (i) serially ---------------------------------------------------------------------------------------------

@MODES
@STORES
def test_serial_retries_run_the_handler_once_and_get_the_same_answer(make_app, request, mode, store):
    pushes = make_pushes()
    runs = Runs()
    client = WeChatTestClient(app_for(make_app, request, mode, store, runs))
    answers: Dict[int, list] = collections.defaultdict(list)
    for push in pushes:
        for _ in range(DELIVERIES):
            answer = client.send(push.xml)        # signed (and encrypted) afresh each time, as WeChat retries
            answers[push.id].append(comparable(client.signer, answer.status, answer.body, answer.content_type))
    check(pushes, answers, lambda p: runs.counts[p.key], runs.total)
    if mode == "plain":   # the replayed reply is the very same bytes, CreateTime included
        assert all(len({a[2] for a in got}) == 1 for got in answers.values())


def test_pushes_differing_only_in_event_or_event_key_are_not_retries(make_app):
    runs = Runs()
    client = WeChatTestClient(make_app(router=runs.router()))
    now = int(time.time())
    sent = [message_xml(event=e, key=k, sender="oSame", create_time=now)
            for e, k in [("CLICK", "A"), ("CLICK", "B"), ("VIEW", "A"), ("CLICK", None)]]
    for xml in sent + sent:
        assert client.send(xml).status == 200
    assert runs.total == 4 and set(runs.counts.values()) == {1}


# -- (ii) concurrently, in one process -------------------------------------------------------------------

@MODES
@STORES
def test_concurrent_retries_run_the_handler_once_and_get_the_same_answer(make_app, request, mode, store):
    pushes = make_pushes()
    runs = Runs(delay=0.05)
    app = app_for(make_app, request, mode, store, runs)
    local = threading.local()
    answers: Dict[int, list] = collections.defaultdict(list)
    arrivals: Dict[int, List[float]] = collections.defaultdict(list)
    lock = threading.Lock()

    def deliver(item: Tuple[Push, int]) -> None:
        push, _ = item
        if not hasattr(local, "client"):
            local.client = WeChatTestClient(app)      # each thread its own test client
        arrived = time.monotonic()
        answer = local.client.send(push.xml)
        with lock:
            answers[push.id].append(comparable(local.client.signer, answer.status, answer.body, answer.content_type))
            arrivals[push.id].append(arrived)

    with ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(deliver, plan(pushes)))
    check(pushes, answers, lambda p: runs.counts[p.key], runs.total)
    # The waiting path was taken: some retries arrived while their push's first delivery was being handled.
    overlapped = sum(1 for p in pushes for t in sorted(arrivals[p.id])[1:]
                     if runs.running[p.key][0] <= t < runs.running[p.key][1])
    assert overlapped >= 5, overlapped


# -- (iii) across processes sharing one Redis --------------------------------------------------------------

def serve(redis_url: str, token: str, aes_key: Optional[str], ports: Any) -> None:
    """A worker process: the bot with Redis-shared state and a slow handler counting its runs in Redis."""
    from flask import Flask
    from werkzeug.serving import make_server

    from kf_plugin import KfPlugin

    connection = redis.Redis.from_url(redis_url)

    def handle(message: Any) -> Optional[str]:
        run = connection.incr("exactly-once:runs")
        connection.hincrby("exactly-once:by-push", "|".join(push_identity(message._data)), 1)
        time.sleep(0.2)                       # the other processes' deliveries arrive meanwhile
        return answer_for(message, run)

    router = MessageRouter("worker")
    router.add(TEXT, handle)
    router.add(EVENT, handle)
    app = Flask("exactly_once_worker")
    app.config.update(KF_TOKEN=token, KF_APPID=APPID, KF_REDIS_URL=redis_url)
    if aes_key:
        app.config["KF_ENCODING_AES_KEY"] = aes_key
    KfPlugin(app, router=router)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    ports.put(server.server_port)
    server.serve_forever()


@pytest.fixture
def workers(redis_url, request):
    """``workers(mode)`` → the URLs of three server processes sharing ``redis_url``."""
    started: List[Any] = []

    def start(mode: str) -> List[str]:
        ports = SPAWN.Queue()
        for _ in range(3):
            process = SPAWN.Process(target=serve, args=(redis_url, TOKEN, AES_KEY if mode == "safe" else None, ports),
                                    daemon=True)
            process.start()
            started.append(process)
        return [f"http://127.0.0.1:{ports.get(timeout=60)}/wechat" for _ in range(3)]
    yield start
    for process in started:
        if process.is_alive():
            process.kill()
        process.join(5)


@MODES
def test_retries_spread_over_three_processes_run_the_handler_once(workers, redis_url, mode):
    urls = workers(mode)
    pushes = make_pushes()
    signer = PushSigner(TOKEN, AES_KEY if mode == "safe" else None, APPID)
    answers: Dict[int, list] = collections.defaultdict(list)
    lock = threading.Lock()
    sessions = threading.local()

    def deliver(item: Tuple[Push, int]) -> None:
        push, delivery = item
        if not hasattr(sessions, "session"):
            sessions.session = requests.Session()
        query, body = signer.sign(push.xml)
        url = urls[(push.id + delivery) % 3]     # each of a push's three deliveries goes to another process
        response = sessions.session.post(url, params=query, data=body, timeout=30)
        with lock:
            answers[push.id].append(comparable(signer, response.status_code, response.text,
                                               response.headers.get("Content-Type", "")))

    with ThreadPoolExecutor(max_workers=12) as pool:
        list(pool.map(deliver, plan(pushes)))
    connection = redis.Redis.from_url(redis_url)
    by_push = {k.decode(): int(v) for k, v in connection.hgetall("exactly-once:by-push").items()}
    total = int(connection.get("exactly-once:runs") or 0)
    check(pushes, answers, lambda p: by_push.get("|".join(p.key), 0), total)
    # All three processes did some of the work.
    pids = {got[0][2].rsplit(" by ", 1)[1] for got in answers.values() if " by " in got[0][2]}
    assert len(pids) == 3, pids


# -- the Redis these tests count in ----------------------------------------------------------------------------

def test_this_sessions_redis_claim_is_in_the_database_it_claims(redis_server_url):
    """The counts above live in the test session's own Redis database, which conftest claims with a
    ``kf-test:claimed-by`` key in that database (so that other sessions pick another one).

    Found with the soak: ``_claim_database`` opens ``redis.Redis.from_url("redis://127.0.0.1:6379/0", db=N)``,
    and redis-py lets the URL's ``/0`` win over ``db=N``. So the claim is written to database 0 (where every
    session finds "its" claim already taken: a second concurrent session fails all its Redis tests with
    "every Redis database 1-15 is claimed"), and at the end of every session ``connection.flushdb()``
    empties database 0 of the local Redis, whatever else was in it.
    """
    import os

    from .conftest import CLAIM
    if os.environ.get("KF_TEST_REDIS_URL"):
        pytest.skip("KF_TEST_REDIS_URL names the database: nothing is claimed")
    assert redis.Redis.from_url(redis_server_url).get(CLAIM) is not None, \
        f"the claim of {redis_server_url} is not in that database"
