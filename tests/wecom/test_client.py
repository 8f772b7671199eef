"""WeComClient against a local stand-in for qyapi.weixin.qq.com over real HTTP: the shared token, its renewal,
retries, timeouts, errors and redaction."""
import logging
import threading
import time

import pytest

from kf_plugin.errors import (
    ConfigError,
    InvalidTokenError,
    KfError,
    RateLimitedError,
    WeChatAPIError,
    WeChatNetworkError,
)
from kf_plugin.state import MemoryTokenStore, Token
from kf_plugin.wecom.client import WeComClient, token_store_name
from kf_plugin.wecom.errors import (
    SendWindowError,
    SessionStateError,
    SyncTokenError,
    WeComAPIError,
    WeComCredentialsError,
    WeComTokenError,
)

from ..redis_servers import free_port
from .fake_qyapi import CORPID, SECRET, FakeQyapi, served

LIST = "/cgi-bin/kf/servicer/list"
SEND = "/cgi-bin/kf/send_msg"
SYNC = "/cgi-bin/kf/sync_msg"
TOKEN = "/cgi-bin/gettoken"


@pytest.fixture
def qyapi():
    with served(FakeQyapi()) as fake:
        yield fake


@pytest.fixture
def client(qyapi):
    return WeComClient(qyapi.corpid, qyapi.secret, api_base_url=qyapi.url, timeout=2)


def make_client(qyapi, **options):
    return WeComClient(qyapi.corpid, qyapi.secret, api_base_url=qyapi.url, **{"timeout": 2, **options})


# -- the token --------------------------------------------------------------------------------------------

def test_the_token_is_fetched_with_corpid_and_secret_and_sent_with_each_call(qyapi, client):
    client.get(LIST, {"open_kfid": "wkA"})
    client.post(SEND, {"touser": "wmB"})
    fetch, *calls = qyapi.calls
    assert (fetch.method, fetch.path, fetch.query) == ("GET", TOKEN, {"corpid": CORPID, "corpsecret": SECRET})
    assert [(c.method, c.path) for c in calls] == [("GET", LIST), ("POST", SEND)]
    assert {c.query["access_token"] for c in calls} == {qyapi.issued[0]}
    assert calls[0].query["open_kfid"] == "wkA" and calls[1].body == {"touser": "wmB"}


def test_two_clients_on_one_memory_store_fetch_the_token_once(qyapi):
    store = MemoryTokenStore()
    first, second = make_client(qyapi, token_store=store), make_client(qyapi, token_store=store)
    first.get(LIST)
    second.get(LIST)
    assert len(qyapi.calls_to(TOKEN)) == 1
    assert [c.query["access_token"] for c in qyapi.calls_to(LIST)] == [qyapi.issued[0]] * 2


def redis_store(redis_url, corpid=CORPID):
    import redis

    from kf_plugin.state.redis_tokens import RedisTokenStore
    return RedisTokenStore(redis.Redis.from_url(redis_url), token_store_name(corpid))


def test_workers_sharing_redis_fetch_the_token_once(qyapi, redis_url):
    workers = [make_client(qyapi, token_store=redis_store(redis_url)) for _ in range(6)]
    start = threading.Barrier(len(workers))
    failures = []

    def work(worker):
        start.wait()
        try:
            worker.get(LIST)
        except Exception as exc:  # collected: a thread's failure must fail the test
            failures.append(exc)
    threads = [threading.Thread(target=work, args=(w,)) for w in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert failures == []
    assert len(qyapi.calls_to(TOKEN)) == 1
    assert {c.query["access_token"] for c in qyapi.calls_to(LIST)} == {qyapi.issued[0]}


def test_the_wecom_token_never_meets_the_official_accounts(qyapi, redis_url):
    import redis

    from kf_plugin.state.redis_tokens import RedisTokenStore
    connection = redis.Redis.from_url(redis_url)
    official = RedisTokenStore(connection, CORPID)       # an Official Account whose AppID equals the corpid
    official.put(Token("official-account-token", time.time() + 3600), time.time())
    client = make_client(qyapi, token_store=redis_store(redis_url))
    client.get(LIST)
    assert qyapi.calls_to(LIST)[0].query["access_token"] == qyapi.issued[0]
    assert official.get().value == "official-account-token"
    assert connection.exists(f"wechatpy:wecom:{CORPID}_access_token", f"wechatpy:{CORPID}_access_token") == 2


@pytest.mark.parametrize("errcode", [40001, 40014, 42001])
def test_a_refused_token_is_renewed_once_and_the_call_retried(qyapi, client, errcode):
    qyapi.refused_token_errcode = errcode
    client.get(LIST)
    qyapi.invalidate_tokens()
    assert client.post(SEND, {"touser": "wmB"}) == {"errcode": 0, "errmsg": "ok"}
    sends = qyapi.calls_to(SEND)
    assert [c.query["access_token"] for c in sends] == qyapi.issued == [qyapi.issued[0], qyapi.issued[1]]
    assert len(qyapi.calls_to(TOKEN)) == 2


def test_a_second_refusal_is_an_error_not_a_retry_storm(qyapi, client):
    client.get(LIST)
    qyapi.fail_next(SEND, 40001, times=5)
    with pytest.raises(WeComTokenError, match=f"WeCom API error 40001 on {SEND}: invalid credential") as info:
        client.post(SEND, {"touser": "wmB"})
    assert isinstance(info.value, InvalidTokenError) and info.value.errcode == 40001
    assert len(qyapi.calls_to(SEND)) == 2 and len(qyapi.calls_to(TOKEN)) == 2


def test_a_token_renewed_by_another_worker_meanwhile_is_used_not_dropped(qyapi):
    store = MemoryTokenStore()
    client, other = make_client(qyapi, token_store=store), make_client(qyapi, token_store=store)
    client.get(LIST)
    stale = store.get().value
    qyapi.invalidate_tokens()
    # While the call with the stale token is on its way, another worker sees it refused and renews it.
    qyapi.fail_next(SEND, 42001, before=lambda call: other.tokens.recover(stale))
    client.post(SEND, {"touser": "wmB"})
    sends = qyapi.calls_to(SEND)
    assert [c.query["access_token"] for c in sends] == [stale, qyapi.issued[1]]
    assert len(qyapi.calls_to(TOKEN)) == 2        # the other worker's renewal served both


@pytest.mark.parametrize("corpid, secret, errcode, meaning", [
    (CORPID, "not-the-secret", 40001, "invalid secret: the corpid and secret do not match"),
    ("wwnope", SECRET, 40013, "invalid corpid"),
])
def test_refused_credentials(qyapi, corpid, secret, errcode, meaning):
    client = WeComClient(corpid, secret, api_base_url=qyapi.url)
    with pytest.raises(WeComCredentialsError, match=f"WeCom API error {errcode} on {TOKEN}: {meaning}") as info:
        client.get(LIST)
    assert info.value.errcode == errcode and info.value.path == TOKEN
    assert secret not in str(info.value) and not isinstance(info.value, InvalidTokenError)
    assert len(qyapi.calls_to(TOKEN)) == 1 and qyapi.calls_to(LIST) == []


# -- errors -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("errcode, cls, meaning", [
    (95001, SendWindowError, "send limit reached: at most 5 messages may follow the customer's last message"),
    (95018, SessionStateError, "the session's state does not allow sending"),
    (95007, SyncTokenError, "invalid message token"),
    (45009, RateLimitedError, "API call frequency limit reached"),
    (95006, WeComAPIError, "invalid kf account name"),
])
def test_answers_become_typed_errors_with_errcode_and_meaning(qyapi, client, errcode, cls, meaning):
    qyapi.fail_next(SEND, errcode)
    with pytest.raises(cls) as info:
        client.post(SEND, {"touser": "wmB"})
    error = info.value
    assert isinstance(error, WeComAPIError) and isinstance(error, WeChatAPIError)
    assert (error.errcode, error.path) == (errcode, SEND)
    assert str(error).startswith(f"WeCom API error {errcode} on {SEND}: {meaning}")
    assert "(WeCom said: refused, hint: [1700000000_1_abc]" in str(error)
    assert len(qyapi.calls_to(SEND)) == 1        # a refusal is not tried again


def test_system_busy_is_tried_again(qyapi, client):
    qyapi.fail_next(SEND, -1)
    client.post(SEND, {"touser": "wmB"})
    assert len(qyapi.calls_to(SEND)) == 2


@pytest.mark.parametrize("method, path", [("GET", LIST), ("POST", SEND)])
def test_http_5xx_is_tried_again_then_a_network_error(qyapi, client, method, path):
    qyapi.http_error(path, 502, times=5)
    with pytest.raises(WeChatNetworkError, match=f"the WeCom API answered HTTP 502 on {path}") as info:
        client.get(path) if method == "GET" else client.post(path, {})
    assert info.value.sent is False and len(qyapi.calls_to(path)) == 3


def test_a_post_that_failed_with_5xx_once_goes_through_once(qyapi, client):
    qyapi.http_error(SEND, 503)
    client.post(SEND, {"touser": "wmB"})
    assert [c.body for c in qyapi.calls_to(SEND)] == [{"touser": "wmB"}] * 2


def test_an_answer_that_is_not_json_is_a_network_error(qyapi, client):
    qyapi.garbage_next(LIST)
    qyapi.garbage_next(LIST)
    qyapi.garbage_next(LIST)
    with pytest.raises(WeChatNetworkError, match=f"answered HTTP 200 without a JSON object on {LIST}"):
        client.get(LIST)


# -- timeouts and unreachable hosts -------------------------------------------------------------------------

@pytest.mark.parametrize("method, idempotent, tries", [("GET", True, 3), ("POST", True, 3), ("POST", False, 1)])
def test_a_call_that_times_out_is_a_network_error(qyapi, method, idempotent, tries):
    client = make_client(qyapi, timeout=0.2)
    client.get(LIST)                               # the token is there: only the call itself times out
    qyapi.hold(SYNC, times=3)
    with pytest.raises(WeChatNetworkError, match=f"cannot reach the WeCom API on {SYNC}: .*timed out") as info:
        client.get(SYNC) if method == "GET" else client.post(SYNC, {}, idempotent=idempotent)
    # A POST that may have reached WeCom is repeated only when the caller says that is harmless.
    assert info.value.sent is True and len(qyapi.calls_to(SYNC)) == tries


def test_a_token_fetch_that_times_out_is_tried_attempts_times_in_all(qyapi):
    client = make_client(qyapi, timeout=0.2, attempts=2)
    qyapi.hold(TOKEN, times=5)
    with pytest.raises(WeChatNetworkError, match=f"cannot reach the WeCom API on {TOKEN}"):
        client.post(SEND, {"touser": "wmB"})
    assert len(qyapi.calls_to(TOKEN)) == 2 and qyapi.calls_to(SEND) == []


def test_an_unreachable_host_is_a_network_error_naming_nothing_secret():
    client = WeComClient(CORPID, SECRET, api_base_url=f"http://127.0.0.1:{free_port()}", timeout=1, attempts=2)
    with pytest.raises(WeChatNetworkError, match=f"cannot reach the WeCom API on {TOKEN}") as info:
        client.get(LIST)
    assert info.value.sent is False and SECRET not in str(info.value) and info.value.__cause__ is None


# -- connections ----------------------------------------------------------------------------------------------

def calls_at_once(client: WeComClient, count: int) -> None:
    threads = [threading.Thread(target=client.post, args=("/cgi-bin/kf/account/list", {})) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


@pytest.mark.parametrize("connections, discarded", [(16, 0), (10, 6)])
def test_connections_are_kept_for_as_many_calls_as_run_at_once(api, caplog, connections, discarded):
    caplog.set_level(logging.DEBUG, logger="urllib3.connectionpool")
    api.sandbox.wecom.latency = 0.2   # the calls overlap
    client = WeComClient(api.sandbox.wecom.corpid, api.sandbox.wecom.secret, api_base_url=api.url,
                         connections=connections)
    client.tokens.current()
    for _ in range(2):
        calls_at_once(client, 16)
    # urllib3's words: a connection the pool has no room for is discarded after its call, and made anew later.
    made = sum("Starting new HTTP connection" in r.getMessage() for r in caplog.records)
    assert sum("Connection pool is full" in r.getMessage() for r in caplog.records) == 2 * discarded
    assert made == 16 + discarded   # the second round takes the connections the pool kept


# -- secrets ------------------------------------------------------------------------------------------------

def test_no_secret_or_token_in_any_error_or_log_line(qyapi, caplog):
    caplog.set_level(logging.DEBUG)
    client = make_client(qyapi, timeout=0.2)
    errors = []
    client.get(LIST)
    qyapi.invalidate_tokens()
    client.post(SEND, {"touser": "wmB"})          # renewed once
    for fault in (lambda: qyapi.fail_next(SEND, 42001, times=2), lambda: qyapi.fail_next(SEND, 95018),
                  lambda: qyapi.hold(SEND), lambda: qyapi.http_error(SEND, 500, times=3)):
        fault()
        with pytest.raises(KfError) as info:
            client.post(SEND, {"touser": "wmB"})
        errors.append(info.value)
    for wrong in (WeComClient(CORPID, SECRET + "x", api_base_url=qyapi.url),
                  WeComClient(CORPID, SECRET, api_base_url=f"http://127.0.0.1:{free_port()}", attempts=1)):
        with pytest.raises(KfError) as info:
            wrong.get(LIST)
        errors.append(info.value)
    secrets = [SECRET, *qyapi.issued]
    assert len(qyapi.issued) == 2 and "corpsecret=***" in caplog.text   # urllib3 logged its request lines
    for text in [caplog.text, *map(str, errors), *map(repr, errors), repr(client)]:
        assert not [s for s in secrets if s in text]


def test_the_body_is_utf8_json_without_escapes(qyapi, client):
    client.post(SEND, {"text": {"content": "您好，请稍候"}})
    raw = qyapi.calls_to(SEND)[0].raw
    assert "您好，请稍候".encode("utf-8") in raw and b"\\u" not in raw


# -- configuration -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("corpid, secret, options, message", [
    ("", SECRET, {}, "a corpid and the secret"),
    (CORPID, "", {}, "a corpid and the secret"),
    (CORPID, SECRET, {"attempts": 0}, "attempts must be at least 1, not 0"),
    (CORPID, SECRET, {"connections": 0}, "connections must be at least 1, not 0"),
])
def test_bad_configuration(corpid, secret, options, message):
    with pytest.raises(ConfigError, match=message):
        WeComClient(corpid, secret, **options)


def test_a_path_must_start_with_a_slash(client):
    with pytest.raises(ValueError, match="starts with /.*not 'cgi-bin/kf/sync_msg'"):
        client.post("cgi-bin/kf/sync_msg", {})


def test_repr_and_base_url():
    client = WeComClient(CORPID, SECRET, api_base_url="http://proxy:8080/")
    assert repr(client) == f"<WeComClient {CORPID} → http://proxy:8080>"
    assert WeComClient(CORPID, SECRET).api_base_url == "https://qyapi.weixin.qq.com"
    assert token_store_name(CORPID) == f"wecom:{CORPID}"


def test_the_environment_is_read_once_unless_the_session_is_the_callers(monkeypatch):
    import requests

    monkeypatch.setenv("HTTPS_PROXY", "http://proxy:3128")
    for name in ("NO_PROXY", "no_proxy", "https_proxy"):
        monkeypatch.delenv(name, raising=False)
    own = WeComClient(CORPID, SECRET)
    assert own.http.trust_env is False and own.http.proxies == {"https": "http://proxy:3128"}
    session = requests.Session()
    given = WeComClient(CORPID, SECRET, session=session)
    assert given.http is session and session.trust_env is True and session.proxies == {}
