import threading

import pytest
from wechatpy.replies import TextReply

from kf_plugin import ALL, Event, Keyword, MessageRouter, TEXT
from kf_plugin.testing import message_xml
from kf_plugin.webhook import parse_push


def text(content):
    return parse_push(message_xml(text=content))


def test_first_match_wins_and_none_falls_through():
    router = MessageRouter()
    calls = []

    @router.on(Keyword("a"))
    def declines(message):
        calls.append("declines")
        return None

    @router.on(Keyword("a"))
    def answers(message):
        calls.append("answers")
        return "A"

    @router.on(ALL)
    def never(message):
        calls.append("never")
        return "X"

    match = router.dispatch_with_handler(text("a"))
    assert match.result == "A" and match.handler.name == "answers"
    assert calls == ["declines", "answers"]


def test_no_match_gives_none():
    router = MessageRouter()
    router.add(Keyword("a"), lambda m: "A")
    assert router.dispatch(text("b")) is None
    assert router.dispatch_with_handler(text("b")).handler is None


def test_on_returns_the_function_and_names_the_handler():
    router = MessageRouter()

    def greet(message):
        return "hi"
    assert router.on(TEXT, name="greeting")(greet) is greet
    assert [h.name for h in router.handlers] == ["greeting"]


def test_add_first_goes_in_front():
    router = MessageRouter()
    router.add(ALL, lambda m: "late", name="late")
    router.add(ALL, lambda m: "early", name="early", first=True)
    assert router.dispatch(text("x")) == "early"


def test_included_router_is_consulted_in_place():
    bot, kf = MessageRouter("bot"), MessageRouter("kf")
    bot.add(ALL, lambda m: "bot", name="bot-all")
    kf.add(Keyword("人工"), lambda m: "kf", name="kf-rule")
    bot.include(kf, first=True)
    assert bot.dispatch(text("转人工")) == "kf"
    assert bot.dispatch(text("hello")) == "bot"
    assert [h.name for h in bot.handlers] == ["kf-rule", "bot-all"]
    # Replacing the included router's handlers is seen at once.
    kf.replace([])
    assert bot.dispatch(text("转人工")) == "bot"


def test_include_refuses_cycles():
    a, b = MessageRouter("a"), MessageRouter("b")
    a.include(b)
    with pytest.raises(ValueError, match="cycle"):
        b.include(a)
    with pytest.raises(ValueError, match="cycle"):
        a.include(a)


def test_before_hook_can_answer_and_after_hook_sees_result():
    router = MessageRouter()
    router.add(Keyword("x"), lambda m: "handler", name="h")
    seen = []

    @router.before
    def block_spam(message):
        return "blocked" if "spam" in message.content else None

    @router.after
    def audit(message, result, handler):
        seen.append((result, handler.name if handler else None))
        return result.upper() if result else result

    assert router.dispatch(text("spam x")) == "blocked"
    assert router.dispatch(text("x")) == "HANDLER"
    assert router.dispatch(text("nothing")) is None
    assert seen == [("handler", "h"), (None, None)]


def test_candidates_lists_every_admitting_handler():
    router = MessageRouter()
    router.add(Keyword("a"), lambda m: None, name="one")
    router.add(Event("CLICK"), lambda m: None, name="two")
    router.add(TEXT, lambda m: None, name="three")
    assert [h.name for h in router.candidates(text("a"))] == ["one", "three"]


def test_handlers_may_return_wechatpy_replies():
    router = MessageRouter()
    router.add(ALL, lambda m: TextReply(content="hey", message=m))
    assert router.dispatch(text("x")).content == "hey"


def test_replace_is_atomic_for_concurrent_readers():
    router = MessageRouter()
    router.replace([])
    old = [MessageRouter("x")]  # any entries list
    stop = threading.Event()
    errors = []

    def read():
        while not stop.is_set():
            try:
                router.dispatch(text("a"))
            except Exception as exc:  # pragma: no cover - reported below
                errors.append(exc)

    threads = [threading.Thread(target=read) for _ in range(4)]
    for t in threads:
        t.start()
    for i in range(2000):
        router.replace(old if i % 2 else [])
    stop.set()
    for t in threads:
        t.join()
    assert errors == []
