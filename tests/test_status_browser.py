"""The status page in a real browser (headless Chromium through chromedriver), after a scripted day on the sandbox:
one hand-off refused, one accepted and closed, one still waiting.

Without chromium and chromedriver the tests are skipped — except in CI (CI=true), where they must run.
``KF_STATUS_SCREENSHOT=path`` also saves the phone-sized screenshot there (docs/status-page.png is one).
"""
from __future__ import annotations

import base64
import os
import shutil
from pathlib import Path
from typing import Any, Dict, Iterator, NamedTuple, Optional

import pytest
from prometheus_client import REGISTRY

from kf_plugin.testing.sandbox.server import SandboxServer

from .conftest import TOKEN
from .lifecycle_apps import rules

STATUS = "/kf/status"
BEARER = "browser-bearer-0123456789"
AGENT = "wang@gh_test"
HOUR = 3600.0
#: A phone's screen in CSS pixels (a desktop window cannot be made this narrow: Chromium has a minimum width).
PHONE = {"width": 390, "height": 844, "deviceScaleFactor": 2, "mobile": True}


def _browser_binary() -> Optional[str]:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    binary, driver_path = _browser_binary(), shutil.which("chromedriver")
    missing = "chromium" if binary is None else "chromedriver" if driver_path is None else None
    try:
        from selenium import webdriver
    except ImportError:
        missing = missing or "selenium"
    if missing is not None:
        need = "chromium and chromium-driver (apt-get) and selenium (the dev extra)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI needs {missing}: the status page's browser tests need {need}")
        pytest.skip(f"{missing} is not installed: the status page's browser tests need {need}")
    from selenium.webdriver.chrome.service import Service
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--lang=en-US"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", PHONE)
    yield driver
    driver.quit()


class Served(NamedTuple):
    url: str
    hits_before: Dict[str, float]   # the rules' hits before the day (the process's counters go on across tests)


def _hits(rule: str) -> float:
    return REGISTRY.get_sample_value("kf_rule_matches_total", {"rule": rule}) or 0.0


@pytest.fixture
def served(make_worker, api, redis_url) -> Iterator[Served]:
    """A bot on the sandbox after the scripted day, and where it is served."""
    sandbox, clock = api.sandbox, api.clock
    before = {rule: _hits(rule) for rule in ("ask-for-human", "menu-session")}
    clock.now = float(int(clock.now))   # WeChat dates its events in whole seconds: so are the waits then
    worker = make_worker(rules(), clock=clock, KF_REDIS_URL=redis_url, KF_STATUS_URL=STATUS,
                         KF_STATUS_TOKEN=BEARER, KF_AGENTS_REFRESH=1)
    sandbox.add_agent(AGENT, "Wang", wx="wang_wx")
    with SandboxServer(worker.app) as server:
        sandbox.connect_bot(server.url + "/wechat", TOKEN)
        sandbox.user_event("oRefusedUser000000000000001", "CLICK", "TALK")   # nobody online: refused
        clock.advance(2 * HOUR)
        sandbox.set_online(AGENT)
        sandbox.user_says("oAcceptedUser00000000000001", "转人工")
        clock.advance(95)
        sandbox.accept("oAcceptedUser00000000000001", AGENT)
        clock.advance(600)
        sandbox.close("oAcceptedUser00000000000001")
        clock.advance(HOUR)
        sandbox.user_says("oWaitingUser000000000000001", "人工")
        clock.advance(240)
        with worker.app.app_context():
            worker.plugin.agents.refresh()
        yield Served(server.url, before)
        sandbox.disconnect_bot()


def _text(driver: Any, element_id: str) -> str:
    from selenium.webdriver.common.by import By
    return driver.find_element(By.ID, element_id).text


def test_without_the_credential_the_browser_gets_401_and_nothing_of_the_page(browser, served):
    browser.execute_cdp_cmd("Network.enable", {})
    browser.execute_cdp_cmd("Network.setExtraHTTPHeaders", {"headers": {}})
    browser.get(served.url + STATUS)
    body = browser.find_element("tag name", "body").text
    assert body == "authentication required"
    assert "ask-for-human" not in browser.page_source and "oWait" not in browser.page_source


def test_the_page_shows_the_day_readably_on_a_phone(browser, served, tmp_path: Path):
    browser.execute_cdp_cmd("Network.enable", {})
    browser.execute_cdp_cmd("Network.setExtraHTTPHeaders", {"headers": {"Authorization": f"Bearer {BEARER}"}})
    try:
        browser.get(served.url + STATUS)
    finally:
        browser.execute_cdp_cmd("Network.setExtraHTTPHeaders", {"headers": {}})
    assert browser.title == "kf_plugin status"
    assert "healthy" in _text(browser, "redis")
    rules_shown = _text(browser, "rules")
    hits = {rule: int(before) for rule, before in served.hits_before.items()}
    assert f"ask-for-human hand-off {hits['ask-for-human'] + 2}" in rules_shown
    assert f"menu-session session {hits['menu-session'] + 1}" in rules_shown
    assert f"{AGENT} online 0" in _text(browser, "agents")
    assert "oWai…0001 ask-for-human 4 min 0 s" in _text(browser, "queue")
    handoffs = _text(browser, "handoffs")
    assert "oAcc…0001 ask-for-human accepted 1 min 35 s wang@gh_test" in handoffs
    assert "oRef…0001 menu-session" in handoffs and "refused" in handoffs
    assert "waiting" in handoffs
    assert "3 in all" in _text(browser, "per-hour")
    bars = browser.execute_script("return Array.from(document.querySelectorAll('#per-hour rect'))"
                                  ".map(r => r.getAttribute('height') > 0)")
    assert bars.count(True) == 3
    page = browser.page_source
    assert "oWaitingUser000000000000001" not in page and BEARER not in page
    assert browser.execute_script("return window.innerWidth") == PHONE["width"]
    # Nothing wider than the phone: not the page, and no table hidden past its section's edge either.
    wide = browser.execute_script("return Array.from(document.querySelectorAll('body *'))"
                                  ".filter(e => e.getBoundingClientRect().right > window.innerWidth)"
                                  ".map(e => e.tagName + '#' + e.id)")
    clipped = browser.execute_script("return Array.from(document.querySelectorAll('.scroll'))"
                                     ".filter(e => e.scrollWidth > e.clientWidth)"
                                     ".map(e => e.closest('section').id)")
    assert browser.execute_script("return document.documentElement.scrollWidth") <= PHONE["width"], wide
    assert wide == [] and clipped == []
    _screenshot(browser, tmp_path / "status-page.png")


def _screenshot(driver: Any, path: Path) -> None:
    """The whole page on the phone, saved at ``path`` and at ``KF_STATUS_SCREENSHOT`` when set."""
    shot = driver.execute_cdp_cmd("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True})
    path.write_bytes(base64.b64decode(shot["data"]))
    assert path.stat().st_size > 10_000
    record = os.environ.get("KF_STATUS_SCREENSHOT")
    if record:
        shutil.copyfile(path, record)
