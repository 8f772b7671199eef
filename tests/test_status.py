"""The status page: its credential (bearer or basic, 401 otherwise with nothing of the page), what it shows and
what it never shows (a token, a secret, a whole openid), and its chart and figures."""
from __future__ import annotations

import base64
from typing import Dict

import pytest

from kf_plugin.config import Settings
from kf_plugin.errors import ConfigError
from kf_plugin.lifecycle import HandoffRecord
from kf_plugin.readings import mask, per_hour
from kf_plugin.status import authorized, duration, hour_chart

from .lifecycle_apps import rules

STATUS = "/kf/status"
BEARER = "status-bearer-0123456789"
OPENID = "oSecretOpenid0123456789abcd"


def basic(user: str, password: str) -> Dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def settings(**given: str) -> Settings:
    return Settings.read({"KF_STATUS_URL": STATUS, **given})


@pytest.mark.parametrize("header, expected", [
    (f"Bearer {BEARER}", True), (f"bearer {BEARER}", True), (f"Bearer {BEARER}x", False), ("Bearer ", False),
    (BEARER, False), (None, False), ("", False),
    (basic("ops", "pässword")["Authorization"], True), (basic("ops", "password")["Authorization"], False),
    (basic("op", "pässword")["Authorization"], False), ("Basic !!notbase64", False),
    ("Basic " + base64.b64encode(b"no-colon").decode(), False),
    ("Basic " + base64.b64encode(b"\xff:x").decode(), False),
])
def test_the_credential_is_a_bearer_token_or_the_basic_pair(header, expected):
    assert authorized(header, settings(KF_STATUS_TOKEN=BEARER, KF_STATUS_USER="ops",
                                       KF_STATUS_PASSWORD="pässword")) is expected


def test_a_bearer_token_is_refused_when_only_basic_auth_is_configured():
    assert not authorized(f"Bearer {BEARER}", settings(KF_STATUS_USER="ops", KF_STATUS_PASSWORD="pw"))


@pytest.mark.parametrize("config, problem", [
    ({}, "KF_STATUS_URL '/kf/status' needs a credential"),
    ({"KF_STATUS_USER": "ops"}, "KF_STATUS_USER and KF_STATUS_PASSWORD go together"),
    ({"KF_STATUS_PASSWORD": "pw", "KF_STATUS_TOKEN": BEARER}, "go together"),
])
def test_a_status_page_without_a_whole_credential_is_refused_at_start(make_app, config, problem):
    with pytest.raises(ConfigError, match=problem):
        make_app(KF_STATUS_URL=STATUS, **config)


def test_the_status_url_must_be_a_path(make_app):
    with pytest.raises(ConfigError, match="KF_STATUS_URL must be a URL path"):
        make_app(KF_STATUS_URL="status", KF_STATUS_TOKEN=BEARER)


@pytest.fixture
def status_worker(make_worker, clock):
    worker = make_worker(rules(), clock=clock, KF_STATUS_URL=STATUS, KF_STATUS_TOKEN=BEARER,
                         KF_STATUS_USER="ops", KF_STATUS_PASSWORD="pw")
    worker.api.sandbox.add_agent("wang@gh_test", "Wang", wx="wang_wx", online=True)
    worker.says("人工", sender=OPENID)
    return worker


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, basic("ops", "wrong"),
                                     {"Authorization": f"Basic {BEARER}"}])
def test_without_the_credential_the_page_answers_401_and_nothing_else(status_worker, headers):
    answer = status_worker.app.test_client().get(STATUS, headers=headers)
    assert answer.status_code == 401
    assert answer.headers.getlist("WWW-Authenticate") == ['Bearer realm="kf_plugin status"',
                                                          'Basic realm="kf_plugin status", charset="UTF-8"']
    assert answer.get_data(as_text=True) == "authentication required\n"
    assert answer.headers["Cache-Control"] == "no-store"


@pytest.mark.parametrize("headers", [{"Authorization": f"Bearer {BEARER}"}, basic("ops", "pw")])
def test_the_page_shows_the_rules_the_queue_and_the_hand_offs_but_no_secret(status_worker, headers):
    answer = status_worker.app.test_client().get(STATUS, headers=headers)
    assert answer.status_code == 200 and answer.mimetype == "text/html"
    page = answer.get_data(as_text=True)
    for shown in ("ask-for-human", "menu-session", "wang@gh_test", "oSec…abcd", "waiting", "<svg", "not used",
                  "Access token (official account)"):
        assert shown in page, shown
    with status_worker.app.app_context():
        token = status_worker.plugin.admin.client.tokens.store.get()
    assert token is not None
    for hidden in (OPENID, status_worker.api.sandbox.secret, BEARER, token.value):
        assert hidden not in page, hidden
    assert "://" not in page, "the page loads nothing from anywhere"
    assert "default-src 'none'" in answer.headers["Content-Security-Policy"]


def test_only_get_reaches_the_page(status_worker):
    answer = status_worker.app.test_client().post(STATUS, headers={"Authorization": f"Bearer {BEARER}"})
    assert answer.status_code == 405


def test_the_hours_count_the_requests_of_each_of_the_last_24():
    now = 1_700_000_000.0
    records = [HandoffRecord(str(i), "oUser", "rule", requested_at=now - ago)
               for i, ago in enumerate((10, 3599, 3600, 5 * 3600 + 1, 24 * 3600 + 5, -30))]
    counts = per_hour(records, now)
    assert len(counts) == 24 and counts[-1] == 2 and counts[-2] == 1 and counts[-6] == 1 and sum(counts) == 4


def test_the_chart_has_a_bar_an_hour_and_no_script():
    chart = str(hour_chart([0] * 20 + [1, 0, 3, 2]))
    assert chart.count("<rect") == 24 and "<script" not in chart and ">3</text>" in chart
    assert str(hour_chart([0] * 24)).count('height="0.0"') == 24


@pytest.mark.parametrize("seconds, shown", [(None, "—"), (-5, "0 s"), (45.9, "45 s"), (725, "12 min 5 s"),
                                            (7080, "1 h 58 min")])
def test_durations_read_as_people_say_them(seconds, shown):
    assert duration(seconds) == shown


def test_an_openid_is_shown_by_its_first_four_characters():
    assert mask(OPENID) == "oSec…abcd"
