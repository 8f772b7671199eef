"""A swap of the rules waits for the pushes in flight, and new pushes wait for the swap: never half of each."""
from __future__ import annotations

import threading
import time

from kf_plugin import Keyword, MessageRouter
from kf_plugin.swapping import SwapGate
from kf_plugin.testing import WeChatTestClient

RULES = """\
version: 1
rules:
  - name: ask-{name}
    keywords: 转人工
    reply: "{text}"
"""


def eventually(predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "did not happen in time"
        time.sleep(0.01)


def in_thread(work):
    done = threading.Event()

    def run():
        work()
        done.set()
    threading.Thread(target=run, daemon=True).start()
    return done


def push_in_flight(gate, release):
    """A push held inside ``gate`` on another thread until ``release`` is set; set once it has left."""
    def push():
        with gate.reading():
            release.wait(5)
    done = in_thread(push)
    eventually(lambda: gate._reading == 1)
    return done


def test_a_swap_waits_for_the_push_in_flight_and_new_pushes_wait_for_the_swap():
    gate, order = SwapGate(), []
    release_push = threading.Event()

    def push():
        with gate.reading():
            order.append("push in")
            release_push.wait(5)
            order.append("push out")

    def swap():
        with gate.swapping():
            order.append("swap")

    pushed = in_thread(push)
    eventually(lambda: order == ["push in"])
    swapped = in_thread(swap)
    eventually(lambda: gate._swapping)
    def later_push():
        with gate.reading():
            order.append("later push")

    later = in_thread(later_push)
    assert not swapped.wait(0.2) and not later.wait(0.05)   # the swap waits; the new push waits behind it
    release_push.set()
    assert pushed.wait(5) and swapped.wait(5) and later.wait(5)
    assert order == ["push in", "push out", "swap", "later push"]


def test_a_thread_reading_neither_waits_for_itself_nor_for_its_own_swap():
    gate = SwapGate(wait=5)
    with gate.reading():
        with gate.reading():   # a push handled inside another
            pass
        started = time.monotonic()
        with gate.swapping():   # a handler that reloads the rules
            pass
        assert time.monotonic() - started < 1


def test_a_reading_thread_swaps_as_soon_as_the_other_pushes_leave():
    gate, release = SwapGate(wait=5), threading.Event()
    other = push_in_flight(gate, release)
    with gate.reading():   # a handler that reloads the rules while another push is in flight
        threading.Timer(0.1, release.set).start()
        started = time.monotonic()
        with gate.swapping():
            assert not gate._reading > 1
        assert time.monotonic() - started < 2   # woken when the other push left, not at the end of its wait
    assert other.wait(5)


def test_a_swap_goes_ahead_after_its_wait_and_says_so(caplog):
    gate, stuck = SwapGate(wait=0.2), threading.Event()
    left = push_in_flight(gate, stuck)
    started = time.monotonic()
    with gate.swapping():
        assert time.monotonic() - started >= 0.2
    assert "while 1 push(es) are still being handled" in caplog.text
    stuck.set()
    assert left.wait(5)


def test_a_reload_never_lands_inside_a_push(make_app, tmp_path):
    """A reload asked for while a push is being handled is put in force after it, and the next push has the
    new rules."""
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES.format(name="old", text="旧文件"), encoding="utf-8")
    entered, release = threading.Event(), threading.Event()
    router = MessageRouter()

    @router.on(Keyword("慢"))
    def slow(message):
        entered.set()
        release.wait(5)
        return "好了"

    app = make_app(router=router, KF_RULES=str(rules))
    plugin = app.extensions["kf_plugin"].plugin
    client = WeChatTestClient(app)
    answers = {}
    slow_push = in_thread(lambda: answers.update(slow=client.send_text("慢", sender="oSlow")))
    assert entered.wait(5)
    rules.write_text(RULES.format(name="new", text="新文件"), encoding="utf-8")
    reloaded = in_thread(plugin.reload_rules)
    assert not reloaded.wait(0.2)                      # the reload waits for the push in flight
    assert plugin.rules.rules[0].name == "ask-old"
    release.set()
    assert slow_push.wait(5) and reloaded.wait(5)
    assert answers["slow"].fields["Content"] == "好了"
    assert plugin.rules.rules[0].name == "ask-new"
    assert client.send_text("转人工", sender="oNext").fields["Content"] == "新文件"
