"""The gauges' background refresh: each worker refreshes its own gauges (token, Redis fallback), and one worker of
an account at a time — the holder of a lease in the shared state — reads the queue for ``kf_queue_length``; a
scrape reads the queue in whichever worker serves it.

Two workers are two apps on one Redis; which process each is, as the lease sees it, is its process id, set for
the time of its job's run."""
from __future__ import annotations

import logging
import socket
import time
from typing import Any, Callable, List

import pytest
from flask import Flask
from prometheus_client import REGISTRY

from kf_plugin.lifecycle import Change
from kf_plugin.metrics import OFFICIAL_ACCOUNT
from kf_plugin.readings import GAUGES_INTERVAL, GAUGES_LEASE, GAUGES_LEASE_TTL
from kf_plugin.services import Services
from kf_plugin.state.base import Token

from .conftest import FakeClock

TOKEN_GAUGE = "kf_access_token_expires_in_seconds"
#: The ways the hand-off store lists or counts the users in a hand-off.
READS = ("active", "in_handoff", "conversations", "count_queued")


def gauge(name: str, **labels: str) -> float:
    value = REGISTRY.get_sample_value(name, labels)
    assert value is not None, f"{name} {labels} was never set"
    return value


def services_of(app: Flask) -> Services:
    return app.extensions["kf_plugin"].services


def reads_of(monkeypatch: pytest.MonkeyPatch, services: Services) -> List[str]:
    """A list that fills with the name of each read of the users in a hand-off from ``services``' store."""
    seen: List[str] = []
    store = services.shared.handoffs
    for name in READS:
        method = getattr(store, name, None)
        if method is not None:
            def spy(*args: Any, _name: str = name, _method: Callable[..., Any] = method, **kwargs: Any) -> Any:
                seen.append(_name)
                return _method(*args, **kwargs)
            monkeypatch.setattr(store, name, spy)
    return seen


def run_gauges_job(monkeypatch: pytest.MonkeyPatch, app: Flask, pid: int) -> None:
    """One run of the gauges job the app's plugin scheduled, in the worker process ``pid``."""
    jobs = app.extensions["kf_plugin"].plugin.jobs
    [job] = [spec.func for job_id, spec in jobs._specs.items() if job_id.endswith(":gauges")]
    with monkeypatch.context() as patched:
        patched.setattr("kf_plugin.services.os.getpid", lambda: pid)
        job()


def own_gauges_gone_stale(services: Services) -> None:
    """Set this process's own gauges to values no refresh would give, to see whether the next one sets them (the
    Redis fallback's only with Redis)."""
    services.metrics.token_expires_in(OFFICIAL_ACCOUNT, -1.0)
    if services.shared.failover is not None:
        services.metrics.redis_fallback(True)


def own_gauges_refreshed(services: Services) -> bool:
    fallback_refreshed = services.shared.failover is None or gauge("kf_redis_fallback_active") == 0
    return gauge(TOKEN_GAUGE, channel=OFFICIAL_ACCOUNT) > 7000 and fallback_refreshed


def queue(services: Services, *openids: str) -> None:
    for openid in openids:
        services.shared.handoffs.apply(openid, Change("request", at=time.time(), reason="ask-for-human"))


@pytest.fixture
def workers(make_app, redis_url) -> List[Flask]:
    """Two workers of one account on one Redis, metrics on, an access token stored."""
    apps = [make_app(KF_METRICS=True, KF_REDIS_URL=redis_url, KF_SECRET="secret") for _ in range(2)]
    now = time.time()
    services_of(apps[0]).shared.tokens.put(Token("token-of-both", now + 7200), now)
    return apps


def test_one_worker_reads_the_queue_the_other_only_its_own_gauges(workers, monkeypatch):
    first, second = workers
    reads = [reads_of(monkeypatch, services_of(app)) for app in workers]
    queue(services_of(first), "oGauge01")
    run_gauges_job(monkeypatch, first, 1001)
    assert reads[0] and gauge("kf_queue_length") == 1
    queue(services_of(first), "oGauge02")
    own_gauges_gone_stale(services_of(second))
    run_gauges_job(monkeypatch, second, 1002)
    assert reads[1] == [] and gauge("kf_queue_length") == 1   # not its turn: the queue is not read
    assert own_gauges_refreshed(services_of(second))
    run_gauges_job(monkeypatch, first, 1001)                  # the holder renews its lease
    assert gauge("kf_queue_length") == 2
    queue(services_of(first), "oGauge03")
    scraped = second.test_client().get("/metrics").get_data(as_text=True)
    assert "kf_queue_length 3.0" in scraped                   # a scrape reads the queue, whoever serves it


def test_another_worker_reads_the_queue_once_the_holders_lease_lapses(workers, monkeypatch):
    first, second = workers
    clock = FakeClock(time.time())
    for app in workers:   # the lease's expiry is by the token store's clock
        monkeypatch.setattr(services_of(app).shared.tokens.primary, "clock", clock)
    reads = reads_of(monkeypatch, services_of(second))
    queue(services_of(first), "oGauge01")
    run_gauges_job(monkeypatch, first, 1001)                  # then the first worker dies
    clock.advance(GAUGES_INTERVAL)
    run_gauges_job(monkeypatch, second, 1002)
    assert reads == []                                        # the lease still holds
    queue(services_of(first), "oGauge02")
    clock.advance(GAUGES_LEASE_TTL - GAUGES_INTERVAL + 0.1)   # about one interval later: the lease lapsed
    run_gauges_job(monkeypatch, second, 1002)
    assert reads and gauge("kf_queue_length") == 2
    assert services_of(second).shared.tokens.holder(GAUGES_LEASE) == f"{socket.gethostname()}:1002"


def test_a_lease_that_cannot_be_taken_skips_the_queue_and_the_job_lives_on(make_app, monkeypatch, caplog):
    app = make_app(KF_METRICS=True, KF_SECRET="secret")   # the memory state: one process reads every round
    services = services_of(app)
    now = time.time()
    services.shared.tokens.put(Token("token", now + 7200), now)
    queue(services, "oGauge01")
    run_gauges_job(monkeypatch, app, 1001)
    queue(services, "oGauge02")
    run_gauges_job(monkeypatch, app, 1001)
    assert gauge("kf_queue_length") == 2

    def down(name: str, owner: str, ttl: float) -> bool:
        raise RuntimeError("the lease's store is down")
    monkeypatch.setattr(services.shared.tokens, "acquire", down)
    reads = reads_of(monkeypatch, services)
    queue(services, "oGauge03")
    own_gauges_gone_stale(services)
    with caplog.at_level(logging.WARNING, logger="kf_plugin.readings"):
        run_gauges_job(monkeypatch, app, 1001)
    assert reads == [] and gauge("kf_queue_length") == 2 and own_gauges_refreshed(services)
    assert "the queue is not read this round" in caplog.text and "the lease's store is down" in caplog.text
