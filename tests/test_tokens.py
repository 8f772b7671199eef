"""The token service: passive renewal, the leader's job, compare-and-swap recovery, single flight."""
import threading

import pytest

from kf_plugin.client import KfClient
from kf_plugin.errors import RateLimitedError, WeChatNetworkError
from kf_plugin.state import MemoryTokenStore, Token
from kf_plugin.tokens import FORCE_REFRESH_DAILY_LIMIT, REUSE_FOR, STABLE_RENEWAL_WINDOW, TokenService

from .conftest import FakeClock


class FakeWeChat:
    """Hands out numbered tokens of 7200 s; can be told to fail."""

    def __init__(self):
        self.fetches = []
        self.failing = None

    def __call__(self, force):
        if self.failing is not None:
            raise self.failing
        self.fetches.append(force)
        return f"token-{len(self.fetches)}", 7200


@pytest.fixture
def clock():
    return FakeClock(1_700_000_000)


@pytest.fixture
def wechat():
    return FakeWeChat()


def service(wechat, clock, store=None, **options):
    return TokenService(wechat, store or MemoryTokenStore(clock), clock=clock, **options)


def test_the_first_call_fetches_and_later_calls_reuse(wechat, clock):
    tokens = service(wechat, clock)
    assert [tokens.current() for _ in range(5)] == ["token-1"] * 5
    assert wechat.fetches == [False]


def test_an_expiring_token_is_renewed_on_the_spot(wechat, clock):
    tokens = service(wechat, clock)
    tokens.current()
    clock.advance(7200 - 59)          # under a minute left: treated as gone
    assert tokens.current() == "token-2"


@pytest.mark.parametrize("mode, margin, renews_at", [
    ("classic", 600, 600),
    ("stable", 600, STABLE_RENEWAL_WINDOW),   # WeChat has no new stable token before its last 5 minutes
    ("stable", 120, 120),
])
def test_the_job_renews_ahead_of_expiry(wechat, clock, mode, margin, renews_at):
    tokens = service(wechat, clock, mode=mode, margin=margin)
    tokens.tick()                                  # once at start
    clock.advance(7200 - renews_at - 1)
    tokens.tick()
    assert len(wechat.fetches) == 1
    clock.advance(2)
    tokens.tick()
    assert len(wechat.fetches) == 2 and tokens.current() == "token-2"


def test_only_the_leader_renews(wechat, clock):
    store = MemoryTokenStore(clock)
    workers = [service(wechat, clock, store, mode="classic", interval=60) for _ in range(4)]
    fetched_by = []
    for _ in range(2 * 110):                       # two lifetimes, every worker ticking each minute
        for worker in workers:
            before = len(wechat.fetches)
            worker.tick()
            if len(wechat.fetches) > before:
                fetched_by.append(worker.owner)
        clock.advance(60)
    assert len(wechat.fetches) == 2                # at start, then 600 s before the first token expires
    assert set(fetched_by) == {workers[0].owner} == {store.holder("leader")}
    assert workers[1].info().leader == workers[0].owner and workers[1].info().me == workers[1].owner


def test_a_dead_leader_is_replaced_before_the_token_expires(wechat, clock):
    store = MemoryTokenStore(clock)
    leader = service(wechat, clock, store, mode="classic", interval=60)
    follower = service(wechat, clock, store, mode="classic", interval=60)
    leader.tick()
    for _ in range(int((7200 - 600) / 60) + 3):    # the leader is gone; the follower ticks every minute
        clock.advance(60)
        follower.tick()
        assert store.get() is not None and store.get().expires_at > clock()
    assert len(wechat.fetches) == 2 and store.holder("leader") == follower.owner


def test_a_failed_renewal_keeps_the_token_and_warns_with_the_time_left(wechat, clock, caplog):
    tokens = service(wechat, clock, mode="classic", attempts=1)
    tokens.tick()
    clock.advance(7200 - 300)
    wechat.failing = WeChatNetworkError("cannot reach the WeChat API on /cgi-bin/token: down")
    tokens.tick()
    assert "could not renew the access token" in caplog.text and "still valid for 300 s" in caplog.text
    assert tokens.current() == "token-1"


def test_passing_failures_are_retried(wechat, clock, caplog):
    calls = []

    def flaky(force):
        calls.append(force)
        if len(calls) < 3:
            raise WeChatNetworkError("boom")
        return "token-ok", 7200

    assert service(flaky, clock).current() == "token-ok" and len(calls) == 3
    assert caplog.text.count("retrying") == 2


def test_recover_drops_only_the_token_that_failed(wechat, clock):
    store = MemoryTokenStore(clock)
    tokens = service(wechat, clock, store)
    old = tokens.current()
    store.put(Token("renewed-elsewhere", clock() + 7200), clock())
    assert tokens.recover(old) == "renewed-elsewhere" and len(wechat.fetches) == 1
    assert tokens.recover("renewed-elsewhere") == "token-2"


def test_concurrent_recoveries_renew_once(wechat, clock):
    store = MemoryTokenStore(clock)
    tokens = [service(wechat, clock, store) for _ in range(10)]   # ten workers, one store
    failed = tokens[0].current()
    barrier = threading.Barrier(10)
    results = []

    def recover(worker):
        barrier.wait()
        results.append(worker.recover(failed))

    threads = [threading.Thread(target=recover, args=(t,)) for t in tokens]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == ["token-2"] * 10 and len(wechat.fetches) == 2


class CountingStore(MemoryTokenStore):
    """A token store shared by the services given it, counting its reads (as a Redis store's round trips)."""

    def __init__(self, clock):
        super().__init__(clock)
        self.reads = 0

    def get(self):
        self.reads += 1
        return super().get()


def test_a_shared_token_is_read_again_only_after_a_few_seconds(wechat, clock):
    store = CountingStore(clock)
    worker, other = (service(wechat, clock, store, reuse_for=REUSE_FOR) for _ in range(2))
    assert worker.current() == "token-1"
    reads = store.reads
    assert [worker.current() for _ in range(10)] == ["token-1"] * 10 and store.reads == reads
    other.force_refresh()                           # renewed by another worker: seen once the reuse is over
    reads = store.reads
    assert worker.current() == "token-1" and store.reads == reads
    clock.advance(REUSE_FOR)
    assert worker.current() == "token-2" and store.reads == reads + 1


def test_a_reused_token_that_fails_is_replaced_at_once(wechat, clock):
    store = CountingStore(clock)
    worker, other = (service(wechat, clock, store, reuse_for=REUSE_FOR) for _ in range(2))
    failed = worker.current()
    assert other.recover(failed) == "token-2"       # another worker saw it fail first
    assert worker.current() == failed               # still reused here …
    assert worker.recover(failed) == "token-2" and worker.current() == "token-2"   # … until it fails here
    assert len(wechat.fetches) == 2


def test_a_reused_token_is_never_used_within_a_minute_of_its_end(wechat, clock):
    tokens = service(wechat, clock, CountingStore(clock), reuse_for=3600)
    assert tokens.current() == "token-1"
    clock.advance(7200 - 60)
    assert tokens.current() == "token-2"


def test_a_token_in_this_process_s_memory_is_read_every_time(wechat, clock):
    store = MemoryTokenStore(clock)
    tokens = service(wechat, clock, store)
    assert tokens.reuse_for == 0 and tokens.current() == "token-1"
    store.put(Token("put-by-hand", clock() + 7200), clock())
    assert tokens.current() == "put-by-hand"


def test_force_refresh_respects_the_daily_limit(wechat, clock):
    tokens = service(wechat, clock, mode="stable")
    for _ in range(FORCE_REFRESH_DAILY_LIMIT):
        tokens.force_refresh()
    with pytest.raises(RateLimitedError, match="refused before calling WeChat: 20 forced refreshes a day"):
        tokens.force_refresh()
    assert wechat.fetches == [True] * FORCE_REFRESH_DAILY_LIMIT
    clock.advance(86400)
    tokens.force_refresh()


def test_info_hides_the_token_unless_asked(wechat, clock):
    tokens = service(wechat, clock)
    tokens.current()
    assert tokens.info().token is None and tokens.info(reveal=True).token == "token-1"
    assert tokens.info().expires_at == clock() + 7200 and tokens.info().mode == "stable"


# -- against the sandbox ---------------------------------------------------------------------------------

def test_a_hundred_calls_hitting_40001_renew_once_and_retry_once(api):
    client = KfClient(api.sandbox.appid, api.sandbox.secret, api_base_url=api.url, timeout=5)
    client.get("/cgi-bin/customservice/getkflist")
    api.sandbox.invalidate_tokens()
    api.sandbox.clear_calls()
    # Hold the first answers back until every call has been sent with the stale token.
    api.sandbox.faults.add_latency(0.5, path="/cgi-bin/customservice/getkflist", times=100)
    barrier = threading.Barrier(100)
    errors = []

    def call():
        barrier.wait()
        try:
            client.get("/cgi-bin/customservice/getkflist")
        except Exception as exc:  # collected and reported below
            errors.append(exc)

    threads = [threading.Thread(target=call) for _ in range(100)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(api.sandbox.calls_to("/cgi-bin/stable_token")) == 1
    answers = [c.errcode for c in api.sandbox.calls_to("/cgi-bin/customservice/getkflist")]
    assert answers.count(40001) == 100 and answers.count(0) == 100 and len(answers) == 200


def test_the_job_keeps_a_shared_redis_token_fresh(api, redis_url):
    import redis
    from kf_plugin.state.redis_tokens import RedisTokenStore
    connection = redis.Redis.from_url(redis_url)
    workers = [KfClient(api.sandbox.appid, api.sandbox.secret, api_base_url=api.url, token_mode="classic",
                        token_store=RedisTokenStore(connection, api.sandbox.appid, clock=api.clock))
               for _ in range(3)]
    for worker in workers:
        worker.tokens.clock = api.clock
    for _ in range(3 * 120):                       # three token lifetimes, a tick a minute
        for worker in workers:
            worker.tokens.tick()
            worker.get("/cgi-bin/customservice/getkflist")
        api.clock.advance(60)
    # Tokens live 7200 s and are renewed 600 s early: 21,600 s of traffic need exactly 4.
    assert len(api.sandbox.calls_to("/cgi-bin/token")) == 4
    assert all(c.errcode == 0 for c in api.sandbox.calls_to("/cgi-bin/customservice/getkflist"))
