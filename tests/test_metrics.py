"""The metrics: bounded labels, one count per push, the sink that does nothing while metrics are off, a broken
metric that never fails a push, and each figure where it is counted (API calls, tokens, window, Redis, hand-offs)."""
from __future__ import annotations

import logging
import threading
from typing import Any, Dict, Optional

import pytest
from flask import Flask
from prometheus_client import REGISTRY, CollectorRegistry

from kf_plugin import MessageRouter
from kf_plugin.config import read_setting
from kf_plugin.errors import ConfigError, KfError, OutsideWindowError
from kf_plugin.filters import TEXT
from kf_plugin.metrics import NO_METRICS, OFFICIAL_ACCOUNT, PrometheusMetrics, endpoint_of, errcode_label
from kf_plugin.state import MemoryWindowStore
from kf_plugin.state.failover import Failover
from kf_plugin.testing import WeChatTestClient
from kf_plugin.tokens import TokenService
from kf_plugin.window import WindowTracker

from .conftest import FakeClock
from .lifecycle_apps import OPENID, WANG, eventually, rules, session_event

PUSHES = "kf_pushes_total"


def value(name: str, registry: Any = REGISTRY, **labels: str) -> float:
    """A sample's value now (0 before it exists)."""
    return registry.get_sample_value(name, labels) or 0.0


@pytest.mark.parametrize("path, label", [
    ("/cgi-bin/message/custom/send", "/cgi-bin/message/custom/send"),
    ("/customservice/kfsession/getwaitcase", "/customservice/kfsession/getwaitcase"),
    ("/cgi-bin/kf/sync_msg", "/cgi-bin/kf/sync_msg"),
    ("/cgi-bin/user/info/oUserOpenid0123456789", "other"),
    ("/cgi-bin/message/custom/send/", "other"),
    ("", "other"),
])
def test_an_endpoint_label_is_one_of_a_fixed_set(path: str, label: str):
    assert endpoint_of(path) == label


@pytest.mark.parametrize("errcode, label", [(0, "0"), (45015, "45015"), (40001, "40001"), (-1, "-1"),
                                            (95018, "95018"), (123456789, "other"), ("45015", "other"),
                                            ("network", "network"), ("http", "http")])
def test_an_errcode_label_is_a_known_errcode_or_other(errcode: object, label: str):
    assert errcode_label(errcode) == label


@pytest.mark.parametrize("given, setting", [
    (True, "/metrics"), ("true", "/metrics"), ("1", "/metrics"), ("on", "/metrics"), ("/internal/metrics",
                                                                                      "/internal/metrics"),
    ("registry", "registry"), (False, None), ("false", None), ("off", None), ("", None), (None, None),
])
def test_kf_metrics_reads_a_switch_a_path_or_registry(given: Any, setting: Optional[str]):
    assert read_setting({"KF_METRICS": given}, "KF_METRICS") == setting


@pytest.mark.parametrize("given", ["metrics", "/", "yes please"])
def test_kf_metrics_refuses_anything_else_saying_what_it_takes(given: str):
    with pytest.raises(ConfigError, match="KF_METRICS must be true .* registry"):
        read_setting({"KF_METRICS": given}, "KF_METRICS")


def test_without_metrics_the_sink_does_nothing_and_there_is_no_endpoint(make_app):
    app = make_app()
    services = app.extensions["kf_plugin"].services
    assert services.metrics is NO_METRICS and services.window.metrics is NO_METRICS
    before = value(PUSHES, channel=OFFICIAL_ACCOUNT, status="200")
    assert WeChatTestClient(app).send_text("人工").status == 200
    assert value(PUSHES, channel=OFFICIAL_ACCOUNT, status="200") == before
    assert app.test_client().get("/metrics").status_code == 404


def test_each_push_is_counted_once_and_its_rule_once_whatever_the_retries(make_app):
    app = make_app(KF_METRICS=True)
    client = WeChatTestClient(app)
    pushes, hits = (value(PUSHES, channel=OFFICIAL_ACCOUNT, status="200"),
                    value("kf_rule_matches_total", rule="ask-for-human"))
    latency = value("kf_push_seconds_count", channel=OFFICIAL_ACCOUNT)
    assert client.send_text("人工", msg_id=7001).message_type == "transfer_customer_service"
    assert client.send_text("人工", msg_id=7001).message_type == "transfer_customer_service"   # WeChat's retry
    assert value(PUSHES, channel=OFFICIAL_ACCOUNT, status="200") == pushes + 2
    assert value("kf_push_seconds_count", channel=OFFICIAL_ACCOUNT) == latency + 2
    assert value("kf_rule_matches_total", rule="ask-for-human") == hits + 1
    scraped = app.test_client().get("/metrics")
    assert scraped.status_code == 200 and scraped.mimetype == "text/plain"
    assert 'kf_rule_matches_total{rule="ask-for-human"}' in scraped.get_data(as_text=True)


def test_a_refused_push_is_counted_by_its_status(make_app):
    app = make_app(KF_METRICS="/internal/metrics")
    before = value(PUSHES, channel=OFFICIAL_ACCOUNT, status="403")
    assert app.test_client().post("/wechat?signature=forged&timestamp=1&nonce=n", data="<xml/>").status_code == 403
    assert value(PUSHES, channel=OFFICIAL_ACCOUNT, status="403") == before + 1
    assert app.test_client().get("/internal/metrics").status_code == 200
    assert app.test_client().get("/metrics").status_code == 404


def test_registry_mode_records_without_an_endpoint(make_app):
    app = make_app(KF_METRICS="registry")
    assert app.extensions["kf_plugin"].services.metrics.enabled
    assert all(rule.endpoint != "kf_plugin_metrics" for rule in app.url_map.iter_rules())


def test_a_taken_metrics_path_is_refused(rules_file):
    from kf_plugin import KfPlugin
    app = Flask("taken")
    app.add_url_rule("/metrics", "own_metrics", lambda: "mine")
    app.config.update(KF_TOKEN="t", KF_RULES=str(rules_file), KF_METRICS=True)
    with pytest.raises(ConfigError, match="KF_METRICS '/metrics' is already served by the view 'own_metrics'"):
        KfPlugin(app)


def test_api_calls_are_counted_by_endpoint_and_errcode(client, api):
    registry = CollectorRegistry()
    client.measure(PrometheusMetrics(registry))
    from kf_plugin.admin import KfAdmin
    admin = KfAdmin(client)
    admin.online_agents()
    api.sandbox.kf_enabled = False
    with pytest.raises(KfError):
        admin.online_agents()
    with pytest.raises(KfError):
        client.get("/cgi-bin/nothing/here")
    calls = {"registry": registry, "channel": OFFICIAL_ACCOUNT}
    assert value("kf_api_calls_total", endpoint="/cgi-bin/stable_token", errcode="0", **calls) == 1
    assert value("kf_api_calls_total", endpoint="/cgi-bin/customservice/getonlinekflist", errcode="0", **calls) == 1
    assert value("kf_api_calls_total", endpoint="/cgi-bin/customservice/getonlinekflist", errcode="65400",
                 **calls) == 1
    others = [s for s in _samples(registry, "kf_api_calls_total") if s.labels["endpoint"] == "other"]
    assert [(s.labels["errcode"], s.value) for s in others] == [("http", client.attempts)]   # a GET is retried
    assert value("kf_access_token_renewals_total", registry=registry, channel=OFFICIAL_ACCOUNT) == 1


def _samples(registry: CollectorRegistry, name: str) -> list:
    return [s for family in registry.collect() for s in family.samples if s.name == name]


def test_a_token_renewal_is_counted_with_the_time_it_has_left():
    registry, clock = CollectorRegistry(), FakeClock()
    tokens = TokenService(lambda force: ("token-1", 7200), clock=clock)
    tokens.metrics = PrometheusMetrics(registry)
    assert tokens.current() == "token-1"
    clock.advance(200)
    assert tokens.expires_in() == 7000
    assert value("kf_access_token_renewals_total", registry=registry, channel=OFFICIAL_ACCOUNT) == 1
    assert value("kf_access_token_expires_in_seconds", registry=registry, channel=OFFICIAL_ACCOUNT) == 7000


def test_sends_the_window_refuses_are_counted_by_the_errcode_avoided():
    registry = CollectorRegistry()
    window = WindowTracker(MemoryWindowStore(), unknown_users="refuse", clock=FakeClock())
    window.metrics = PrometheusMetrics(registry)
    with pytest.raises(OutsideWindowError):
        window.check("oNeverSeen")
    assert value("kf_window_refusals_total", registry=registry, errcode="45015") == 1
    assert value("kf_window_refusals_total", registry=registry, errcode="45047") == 0


def test_the_redis_fallback_gauge_follows_the_failover():
    from redis.exceptions import ConnectionError as RedisDown
    registry = CollectorRegistry()
    failover = Failover("test state")
    failover.watch(PrometheusMetrics(registry).redis_fallback)
    assert value("kf_redis_fallback_active", registry=registry) == 0

    def down() -> None:
        raise RedisDown("refused")
    assert failover.run(down, lambda: "memory") == "memory"
    assert value("kf_redis_fallback_active", registry=registry) == 1
    assert failover.run(lambda: "redis", lambda: "memory") == "redis"
    assert value("kf_redis_fallback_active", registry=registry) == 0


class Broken:
    def labels(self, *names: str) -> Any:
        raise RuntimeError("broken metric")


def test_a_broken_metric_is_logged_once_and_never_raised(caplog):
    metrics = PrometheusMetrics(CollectorRegistry())
    metrics._pushes = Broken()   # type: ignore[assignment]
    with caplog.at_level(logging.DEBUG, logger="kf_plugin.metrics"):
        metrics.push(OFFICIAL_ACCOUNT, 200, 0.01)
        metrics.push(OFFICIAL_ACCOUNT, 200, 0.01)
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "the push metric failed" in errors[0].getMessage()
    assert errors[0].exc_info is not None and "broken metric" in str(errors[0].exc_info[1])


def test_a_broken_metric_does_not_fail_the_push(make_app, monkeypatch):
    app = make_app(KF_METRICS=True)
    metrics = app.extensions["kf_plugin"].services.metrics
    monkeypatch.setattr(metrics, "_rules", Broken())
    monkeypatch.setattr(metrics, "_pushes", Broken())
    assert WeChatTestClient(app).send_text("人工").message_type == "transfer_customer_service"


def test_a_hand_off_is_counted_requested_waited_for_and_ended(make_worker, clock):
    worker = make_worker(rules(), clock=clock, KF_METRICS=True)
    requested, ended = (value("kf_handoffs_requested_total", rule="ask-for-human"),
                        value("kf_handoffs_ended_total", rule="ask-for-human", outcome="accepted"))
    waits, waited = value("kf_handoff_wait_seconds_count"), value("kf_handoff_wait_seconds_sum")
    worker.says("人工")
    assert value("kf_handoffs_requested_total", rule="ask-for-human") == requested + 1
    clock.advance(42)
    worker.push(session_event("create", WANG, clock()))
    assert value("kf_handoff_wait_seconds_count") == waits + 1
    assert value("kf_handoff_wait_seconds_sum") == pytest.approx(waited + 42, abs=1)
    clock.advance(60)
    worker.push(session_event("close", WANG, clock()))
    assert worker.conversation(OPENID).stage.value == "bot"
    assert value("kf_handoffs_ended_total", rule="ask-for-human", outcome="accepted") == ended + 1


def test_a_reply_that_outlasts_the_budget_is_counted_late(make_worker):
    release = threading.Event()
    router = MessageRouter("bot")

    @router.on(TEXT)
    def slow(message: Any) -> str:
        release.wait(10)
        return "late answer"
    worker = make_worker(rules(), router=router, KF_METRICS=True, KF_REPLY_BUDGET=0.05)
    before = value("kf_late_replies_total")
    assert worker.says("你好").status == 200
    release.set()
    assert value("kf_late_replies_total") == before + 1
    eventually(lambda: any(sent["text"] == {"content": "late answer"} for sent in worker.api.sandbox.sent))


def test_the_scrape_reads_the_queue_and_the_token(make_worker):
    worker = make_worker(rules(), KF_METRICS=True)
    worker.says("人工")
    scraped = worker.app.test_client().get("/metrics").get_data(as_text=True)
    assert "kf_queue_length 1.0" in scraped
    lines: Dict[str, str] = dict(line.rsplit(" ", 1) for line in scraped.splitlines() if line.startswith("kf_access"))
    assert 0 < float(lines['kf_access_token_expires_in_seconds{channel="official_account"}']) <= 7200
