"""A conversation rehearsed by hand, end to end: a bot built on kf_plugin (served on a loopback port), the
sandbox standalone in its own process (``kf-plugin sandbox``), and nothing between them but the
``kf-plugin sandbox …`` commands."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator, List

import pytest
import requests
from click.testing import CliRunner

from kf_plugin import Keyword, MessageRouter
from kf_plugin.cli import cli
from kf_plugin.lifecycle import Ending, Stage
from kf_plugin.testing.sandbox import SandboxServer

from .conftest import AES_KEY, APPID, TOKEN
from .redis_servers import free_port, wait_until

ROOT = Path(__file__).resolve().parents[1]
SECRET = "rehearsal-secret"
GREETING = "您好，我是机器人"


def _answers(url: str) -> bool:
    with requests.Session() as http:
        http.trust_env = False  # never through a proxy from the environment
        try:
            return http.get(url + "/sandbox/state", timeout=1).status_code == 200
        except requests.ConnectionError:
            return False


@pytest.fixture
def rehearsal(make_app, tmp_path) -> Iterator[Any]:
    """The bot (its plugin yielded) and a standalone sandbox pushing to it, seeded with wang (offline)."""
    sandbox_url = f"http://127.0.0.1:{free_port()}"
    router = MessageRouter()
    router.on(Keyword("你好", match="exact"))(lambda message: GREETING)
    app = make_app(router=router, KF_ENCODING_AES_KEY=AES_KEY, KF_SECRET=SECRET, KF_API_BASE_URL=sandbox_url)
    plugin = app.extensions["kf_plugin"].plugin
    log = (tmp_path / "sandbox.log").open("wb")
    with SandboxServer(app) as bot:
        process = subprocess.Popen(
            [sys.executable, "-c", "from kf_plugin.cli import main; main()", "sandbox",
             "--port", sandbox_url.rsplit(":", 1)[1], "--appid", APPID, "--secret", SECRET,
             "--agent", "wang@gh_test:offline:小王", "--bot-url", bot.url + "/wechat", "--token", TOKEN,
             "--aes-key", AES_KEY], cwd=ROOT, stdout=log, stderr=log, env={**os.environ, "PYTHONPATH": str(ROOT)})
        try:
            wait_until(lambda: _answers(sandbox_url) or process.poll() is not None, "the sandbox's start")
            assert process.poll() is None, (tmp_path / "sandbox.log").read_text()
            yield plugin, sandbox_url
        finally:
            process.terminate()
            process.wait(10)
            log.close()
            plugin.shutdown()


def sandbox(url: str, *args: str) -> List[str]:
    """``kf-plugin sandbox ARGS`` against the standalone sandbox: what it printed (it must succeed)."""
    result = CliRunner().invoke(cli, ["sandbox", *args, "--sandbox-url", url])
    assert result.exit_code == 0, result.output
    return result.stdout.splitlines()


def test_a_hand_off_rehearsed_through_the_commands(rehearsal):
    plugin, url = rehearsal
    assert sandbox(url, "agent", "wang@gh_test", "online") == ["wang@gh_test (小王): online, 0 sessions"]
    since = time.time() - 60
    assert sandbox(url, "say", "oUser", "转人工") == ["bot answered: transfer_customer_service",
                                                     "oUser: waiting in the queue"]
    assert plugin.conversation("oUser").stage is Stage.QUEUED
    assert sandbox(url, "accept", "oUser") == ["bot answered: success (no reply)", "oUser: with wang@gh_test"]
    assert plugin.conversation("oUser").stage is Stage.WITH_AGENT
    assert sandbox(url, "say", "oUser", "在吗") == ["oUser: with wang@gh_test"]
    assert sandbox(url, "agent-says", "oUser", "您好，我是小王") == [
        "wang@gh_test wrote to oUser (a chat record; the bot is not told)", "oUser: with wang@gh_test"]
    assert sandbox(url, "close", "oUser") == ["wang@gh_test closed the session with oUser",
                                             "bot answered: success (no reply)", "oUser: with the bot"]
    assert plugin.conversation("oUser").stage is Stage.BOT
    assert sandbox(url, "say", "oUser", "你好") == [f'bot answered: text "{GREETING}"', "oUser: with the bot"]
    [record] = plugin.handoffs(since)
    assert (record.openid, record.reason, record.agent, record.outcome) == (
        "oUser", "ask-for-human", "wang@gh_test", Ending.ACCEPTED)
