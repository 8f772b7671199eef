"""Pushes to a bot: signed and encrypted as wechatpy reads them, the answer opened, the log, and failures."""
from __future__ import annotations

import threading

import pytest
from wechatpy.crypto import WeChatCrypto
from wechatpy.messages import TextMessage

from kf_plugin.errors import ConfigError
from kf_plugin.testing.sandbox import BotUnreachableError, Push
from kf_plugin.testing.sandbox.pushes import Background

from .conftest import Clock, closed_port
from .wechat_bot import AES_KEY, TOKEN


@pytest.mark.parametrize("aes_key", [None, AES_KEY], ids=["plain", "safe"])
def test_a_text_reaches_the_bot_signed_as_wechatpy_checks_it(sandbox, make_bot, clock: Clock, aes_key):
    bot = make_bot(aes_key)
    answer = sandbox.user_says("oUser1", "你好")
    assert bot.refused == []
    [message] = bot.received
    assert isinstance(message, TextMessage)
    assert (message.source, message.target, message.content) == ("oUser1", "gh_sandbox", "你好")
    assert message.create_time.timestamp() == int(clock.now)
    assert (answer.status, answer.message_type, answer.content) == (200, "text", "收到：你好")
    assert ("<Encrypt>" in answer.body) is (aes_key is not None)


def test_the_account_id_is_the_pushes_to_user(sandbox, make_bot):
    bot = make_bot(account_id="gh_0123456789ab")
    sandbox.user_says("oUser1", "hi")
    assert bot.received[0].target == "gh_0123456789ab"


def test_the_push_log(sandbox, make_bot, clock: Clock):
    make_bot()
    sandbox.user_says("oUser1", "hi")
    [push] = sandbox.pushes
    assert isinstance(push, Push)
    assert (push.openid, push.at, push.msg_type, push.event, push.error) == ("oUser1", clock.now, "text", None, None)
    assert push.fields["Content"] == "hi" and push.answer.content == "收到：hi"


def test_a_bot_with_another_token_refuses_and_its_answer_is_returned(sandbox, make_bot):
    bot = make_bot()
    sandbox.connect_bot(bot.url, "wrong-token")
    answer = sandbox.user_says("oUser1", "人工")
    assert answer.status == 403 and bot.received == [] and len(bot.refused) == 1
    assert sandbox.wait_queue == []  # no transfer was answered


def test_an_unreachable_bot_raises_naming_its_url(sandbox):
    url = f"http://127.0.0.1:{closed_port()}/wechat"
    sandbox.connect_bot(url, TOKEN)
    expected = rf"the bot at {url} did not answer the push: ConnectionError"
    with pytest.raises(BotUnreachableError, match=expected) as raised:
        sandbox.user_says("oUser1", "hi")
    assert raised.value.url == url
    [push] = sandbox.pushes
    assert push.answer is None and url in push.error
    assert sandbox.state.window.knows("oUser1")  # the user spoke all the same


def test_a_bot_slower_than_the_timeout_is_unreachable(sandbox, make_bot):
    bot = make_bot(timeout=0.2)
    bot.hold.clear()
    try:
        with pytest.raises(BotUnreachableError, match="ReadTimeout"):
            sandbox.user_says("oUser1", "hi")
    finally:
        bot.hold.set()


def test_an_encrypted_reply_that_does_not_open_is_no_answer(sandbox, make_bot):
    bot = make_bot(AES_KEY)
    bot.reply_crypto = WeChatCrypto("another-token", AES_KEY, sandbox.appid)  # a MsgSignature the sandbox rejects
    with pytest.raises(BotUnreachableError, match="its reply does not open: the reply's MsgSignature does not match"):
        sandbox.user_says("oUser1", "hi")


@pytest.mark.parametrize("url, token, options, error, message", [
    ("ftp://127.0.0.1/wechat", TOKEN, {}, ValueError, "must be http"),
    ("127.0.0.1:8000/wechat", TOKEN, {}, ValueError, "must be http"),
    ("http:///wechat", TOKEN, {}, ValueError, "must be http"),
    ("http://127.0.0.1/wechat", "", {}, ValueError, "token must be a non-empty string"),
    ("http://127.0.0.1/wechat", TOKEN, {"account_id": ""}, ValueError, "account_id must be"),
    ("http://127.0.0.1/wechat", TOKEN, {"timeout": 0}, ValueError, "timeout must be a positive"),
    ("http://127.0.0.1/wechat", TOKEN, {"timeout": True}, ValueError, "timeout must be a positive"),
    ("http://127.0.0.1/wechat", TOKEN, {"encoding_aes_key": "short"}, ConfigError, "43 letters and digits"),
])
def test_connect_bot_refuses_bad_settings(sandbox, url, token, options, error, message):
    with pytest.raises(error, match=message):
        sandbox.connect_bot(url, token, **options)
    assert sandbox.user_says("oUser1", "hi") is None  # still no bot: nothing was pushed anywhere


def test_disconnected_the_sandbox_pushes_nothing(sandbox, make_bot):
    bot = make_bot()
    sandbox.disconnect_bot()
    assert sandbox.user_says("oUser1", "hi") is None
    assert bot.received == [] and sandbox.pushes == []


# -- the background queue ---------------------------------------------------------------------

def test_background_runs_jobs_in_order_and_wait_covers_reserved_ones():
    background = Background()
    ran, release = [], threading.Event()
    background.reserve()
    background.submit(lambda: (release.wait(5), ran.append(1)))
    background.reserve()  # reserved, not yet submitted: wait must not return before it ran
    assert not background.wait(0.05)
    background.submit(lambda: ran.append(2))
    release.set()
    assert background.wait(5)
    assert ran == [1, 2]


def test_a_failing_background_job_does_not_stop_the_next(caplog):
    background = Background()
    ran = []
    for job in (lambda: 1 / 0, lambda: ran.append("after")):
        background.reserve()
        background.submit(job)
    assert background.wait(5)
    assert ran == ["after"]
    assert "sandbox failed to push in the background" in caplog.text
