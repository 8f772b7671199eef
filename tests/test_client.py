"""KfClient against the sandbox over real HTTP: base URL, tokens, retries, errors, redaction."""
import logging
import time

import pytest

from kf_plugin.client import KfClient, redact
from kf_plugin.errors import (
    ConfigError, InvalidTokenError, RateLimitedError, WeChatAPIError, WeChatNetworkError,
)


def token_calls(api, path="/cgi-bin/stable_token"):
    return len(api.sandbox.calls_to(path))


def test_every_call_goes_to_the_configured_base(api, client):
    client.get("/cgi-bin/customservice/getkflist")
    client.customservice.get_accounts()          # wechatpy's own method, official URL in its code
    paths = [c.path for c in api.sandbox.calls]
    assert paths == ["/cgi-bin/stable_token", "/cgi-bin/customservice/getkflist", "/cgi-bin/customservice/getkflist"]


@pytest.mark.parametrize("url, expected", [
    ("/cgi-bin/x", "BASE/cgi-bin/x"),
    ("https://api.weixin.qq.com/customservice/y", "BASE/customservice/y"),
    ("message/custom/send", "BASE/cgi-bin/message/custom/send"),
    ("https://elsewhere.example/z", "https://elsewhere.example/z"),
])
def test_resolve(url, expected):
    client = KfClient("wx", "secret", api_base_url="http://proxy:8080/")
    assert client.resolve(url) == expected.replace("BASE", "http://proxy:8080")


@pytest.mark.parametrize("mode, path, method", [("stable", "/cgi-bin/stable_token", "POST"),
                                                ("classic", "/cgi-bin/token", "GET")])
def test_token_modes(api, mode, path, method):
    client = KfClient(api.sandbox.appid, api.sandbox.secret, api_base_url=api.url, token_mode=mode)
    client.get("/cgi-bin/customservice/getkflist")
    call = api.sandbox.calls[0]
    assert (call.method, call.path) == (method, path)
    if mode == "stable":
        assert call.body == {"grant_type": "client_credential", "appid": api.sandbox.appid,
                             "secret": api.sandbox.secret, "force_refresh": False}
    assert client.tokens.store.get().value == api.sandbox.calls[1].query["access_token"]


def test_one_token_serves_many_calls(api, client):
    for _ in range(5):
        client.get("/cgi-bin/customservice/getkflist")
    assert token_calls(api) == 1


def test_an_invalidated_token_is_renewed_once_and_the_call_retried(api, client):
    client.get("/cgi-bin/customservice/getkflist")
    api.sandbox.invalidate_tokens()
    client.get("/cgi-bin/customservice/getkflist")
    kflist = api.sandbox.calls_to("/cgi-bin/customservice/getkflist")
    assert [c.errcode for c in kflist] == [0, 40001, 0]
    assert token_calls(api) == 2


def test_no_retry_storm_when_the_token_keeps_failing(api, client):
    client.get("/cgi-bin/customservice/getkflist")
    api.sandbox.faults.fail_next(40001, times=10, path="/cgi-bin/customservice/getkflist")
    with pytest.raises(InvalidTokenError, match="40001"):
        client.get("/cgi-bin/customservice/getkflist")
    assert len(api.sandbox.calls_to("/cgi-bin/customservice/getkflist")) == 3  # first ok, then one failure + one retry
    assert token_calls(api) == 2


def test_a_token_renewed_elsewhere_is_not_dropped(api, client):
    from kf_plugin.state import Token
    client.get("/cgi-bin/customservice/getkflist")
    stale = client.tokens.store.get().value
    client.tokens.store.put(Token("renewed-by-another-worker", time.time() + 3600), time.time())
    assert client.tokens.recover(stale) == "renewed-by-another-worker"
    assert token_calls(api) == 1


@pytest.mark.parametrize("appid, secret, errcode", [("wxnope", "sandbox-secret", 40013), (None, "wrong", 40125)])
def test_bad_credentials(api, appid, secret, errcode):
    client = KfClient(appid or api.sandbox.appid, secret, api_base_url=api.url)
    with pytest.raises(WeChatAPIError) as info:
        client.get("/cgi-bin/customservice/getkflist")
    assert info.value.errcode == errcode and info.value.path == "/cgi-bin/stable_token"
    assert secret not in str(info.value)


def test_rate_limit_is_typed(api, client):
    api.sandbox.faults.fail_next(45009, path="/cgi-bin/customservice/getkflist")
    with pytest.raises(RateLimitedError, match="45009 on /cgi-bin/customservice/getkflist: API call frequency"):
        client.get("/cgi-bin/customservice/getkflist")


def test_dropped_connection_is_a_network_error_without_the_token(api, client):
    client.get("/cgi-bin/customservice/getkflist")
    token = client.tokens.store.get().value
    api.sandbox.faults.drop_next(times=5, path="/cgi-bin/customservice/getkflist")
    with pytest.raises(WeChatNetworkError, match="cannot reach the WeChat API on /cgi-bin/customservice/getkflist") as info:
        client.get("/cgi-bin/customservice/getkflist")
    assert token not in str(info.value) and info.value.__cause__ is None
    assert len(api.sandbox.calls_to("/cgi-bin/customservice/getkflist")) == 1 + 3  # three attempts


def test_http_5xx_is_a_network_error(api, client):
    api.sandbox.faults.http_error(502, times=5, path="/cgi-bin/customservice/getkflist")
    with pytest.raises(WeChatNetworkError, match="HTTP 502 on /cgi-bin/customservice/getkflist"):
        client.get("/cgi-bin/customservice/getkflist")


def test_every_call_has_a_timeout(api):
    client = KfClient(api.sandbox.appid, api.sandbox.secret, api_base_url=api.url, timeout=0.2)
    client.get("/cgi-bin/customservice/getkflist")
    api.sandbox.faults.add_latency(1.0, path="/cgi-bin/customservice/getkflist", times=3)
    with pytest.raises(WeChatNetworkError, match="timed out"):
        client.get("/cgi-bin/customservice/getkflist")
    api.sandbox.faults.add_latency(1.0, path="/cgi-bin/stable_token")   # until cleared
    client.tokens.store.invalidate(client.tokens.store.get().value)
    with pytest.raises(WeChatNetworkError, match="cannot reach the WeChat API on /cgi-bin/stable_token"):
        client.get("/cgi-bin/customservice/getkflist")
    api.sandbox.faults.clear()


def test_unreachable_token_endpoint(api):
    client = KfClient("wx", "s3cret", api_base_url="http://127.0.0.1:9", timeout=1, token_mode="classic")
    with pytest.raises(WeChatNetworkError) as info:
        client.get("/cgi-bin/customservice/getkflist")
    assert "s3cret" not in str(info.value)


def test_tokens_never_reach_the_logs(api, client, caplog):
    caplog.set_level(logging.DEBUG)
    client.get("/cgi-bin/customservice/getkflist")
    api.sandbox.invalidate_tokens()
    client.get("/cgi-bin/customservice/getkflist")
    tokens = {c.query.get("access_token") for c in api.sandbox.calls if c.query.get("access_token")}
    assert tokens and any("getkflist" in r.getMessage() for r in caplog.records)
    for record in caplog.records:
        text = record.getMessage()
        assert not any(token in text for token in tokens), text
        assert api.sandbox.secret not in text


def test_redact():
    assert redact("GET /x?access_token=abc&b=1 secret=zz") == "GET /x?access_token=***&b=1 secret=***"


@pytest.mark.parametrize("kwargs, error", [(dict(appid="", secret="s"), "KF_APPID and KF_SECRET"),
                                           (dict(appid="a", secret="s", token_mode="fast"), "token mode")])
def test_config_errors(kwargs, error):
    with pytest.raises(ConfigError, match=error):
        KfClient(**kwargs)


def test_passing_failures_are_retried_with_backoff(api, client):
    api.sandbox.faults.http_error(502, times=2, path="/cgi-bin/customservice/getkflist")
    assert client.get("/cgi-bin/customservice/getkflist")["errcode"] == 0
    api.sandbox.faults.fail_next(-1, times=1, path="/customservice/kfaccount/add")
    client.post("/customservice/kfaccount/add", data={"kf_account": "a@test", "nickname": "A"})
    assert [c.errcode for c in api.sandbox.calls_to("/customservice/kfaccount/add")] == [-1, 0]


def test_a_post_that_may_have_arrived_is_not_repeated(api, client):
    api.sandbox.interact("oU", "message")
    client.get("/cgi-bin/customservice/getkflist")
    api.sandbox.faults.drop_next(times=1, path="/cgi-bin/message/custom/send")
    with pytest.raises(WeChatNetworkError):
        client.post("/cgi-bin/message/custom/send", data={"touser": "oU", "msgtype": "text", "text": {"content": "x"}})
    assert len(api.sandbox.calls_to("/cgi-bin/message/custom/send")) == 1


def test_a_plain_wechatpy_client_shares_the_redis_token(api, redis_url):
    """The token kept by KfClient is read by an ordinary WeChatClient on the same RedisStorage."""
    import redis
    from wechatpy import WeChatClient
    from wechatpy.session.redisstorage import RedisStorage

    from kf_plugin.state.redis_tokens import RedisTokenStore
    connection = redis.Redis.from_url(redis_url)
    ours = KfClient(api.sandbox.appid, api.sandbox.secret, api_base_url=api.url,
                    token_store=RedisTokenStore(connection, api.sandbox.appid))
    ours.get("/cgi-bin/customservice/getkflist")
    plain = WeChatClient(api.sandbox.appid, api.sandbox.secret, session=RedisStorage(connection))
    assert plain.access_token == ours.tokens.store.get().value
    assert token_calls(api) == 1                   # the plain client fetched nothing


@pytest.mark.parametrize("environment, url, proxies, verify", [
    ({"HTTPS_PROXY": "http://proxy:3128"}, "https://api.weixin.qq.com", {"https": "http://proxy:3128"}, True),
    ({"HTTPS_PROXY": "http://proxy:3128", "NO_PROXY": "api.weixin.qq.com"}, "https://api.weixin.qq.com", {}, True),
    ({"HTTP_PROXY": "http://proxy:3128", "NO_PROXY": "127.0.0.1"}, "http://127.0.0.1:8081", {}, True),
    ({"REQUESTS_CA_BUNDLE": "/etc/ssl/corp.pem"}, "https://api.weixin.qq.com", {}, "/etc/ssl/corp.pem"),
    ({"CURL_CA_BUNDLE": "/etc/ssl/curl.pem"}, "https://api.weixin.qq.com", {}, "/etc/ssl/curl.pem"),
], ids=["proxy", "no-proxy-host", "no-proxy-loopback", "requests-ca-bundle", "curl-ca-bundle"])
def test_the_environment_is_read_once_for_the_apis_host(monkeypatch, environment, url, proxies, verify):
    for name in ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "NO_PROXY", "https_proxy", "http_proxy", "all_proxy",
                 "no_proxy", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    client = KfClient("wxAPPID", "secret", api_base_url=url)
    session = client._http
    assert session.trust_env is False                  # requests no longer reads the environment per request
    assert session.proxies == proxies and session.verify == verify
    monkeypatch.setenv("HTTPS_PROXY", "http://later:1")  # read once: a later change needs a restart
    assert session.merge_environment_settings(url, {}, None, None, None)["proxies"] == proxies
