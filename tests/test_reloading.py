"""The rule watch of one process: the file's stamp and hash, SIGHUP, reload requests through Redis, bad files
kept out with their file, line and rule, and pushes in flight while the rules are swapped."""
from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Dict, List, Tuple

import pytest
import redis
from flask import Flask

from kf_plugin import KfPlugin, Rule
from kf_plugin.errors import KfError, RuleFileError
from kf_plugin.reloading import RuleFileVersion, RuleWatch, install_sighup, read_rule_file, report_ttl
from kf_plugin.rules import RuleSet
from kf_plugin.state.redis_rules import RuleVersions, WorkerReport
from kf_plugin.testing import WeChatTestClient

from .conftest import TOKEN, FakeClock

ONE = 'version: 1\nrules:\n  - name: price\n    keywords: 价格\n    reply: "old price"\n'
TWO = 'version: 1\nrules:\n  - name: price\n    keywords: 价格\n    reply: "new price"\n'
BAD = 'version: 1\nrules:\n  - name: price\n    keywords: 价格\n    reply: "new price"\n    regex: "("\n'


class FakeStat:
    """``os.stat`` as the test says: each path's modification time (ns) and size, moved by hand."""

    def __init__(self) -> None:
        self.stamps: Dict[str, Tuple[int, int]] = {}

    def __call__(self, path: str) -> SimpleNamespace:
        if path not in self.stamps:
            raise FileNotFoundError(path)
        mtime, size = self.stamps[path]
        return SimpleNamespace(st_mtime_ns=mtime, st_size=size)

    def touch(self, path: Path, mtime: int) -> None:
        self.stamps[str(path)] = (mtime, path.stat().st_size)


class Applied:
    """The ``apply`` of a watch: records what it was given (or refuses it with ``refuse``)."""

    def __init__(self) -> None:
        self.rules: List[RuleSet] = []
        self.refuse = None

    def __call__(self, rules: RuleSet, version: RuleFileVersion) -> None:
        if self.refuse is not None:
            raise self.refuse
        self.rules.append(rules)

    @property
    def replies(self) -> List[str]:
        return [rules.rules[0].action.text for rules in self.rules]


@pytest.fixture
def watched(tmp_path):
    """A rule file, a fake stat, a clock and a watch that has the file's first version in force."""
    path = tmp_path / "rules.yaml"
    path.write_text(ONE, encoding="utf-8")
    stat, clock, applied = FakeStat(), FakeClock(), Applied()
    stat.touch(path, 1)
    watch = RuleWatch(applied, clock=clock, stat=stat)
    watch.loaded(read_rule_file(str(path), stat)[1])
    return SimpleNamespace(path=path, stat=stat, clock=clock, applied=applied, watch=watch)


def test_a_changed_stamp_puts_the_new_file_in_force(watched):
    watched.path.write_text(TWO, encoding="utf-8")
    watched.watch.tick()
    assert watched.applied.rules == []                       # same mtime and size: the file is not read
    watched.clock.advance(5)
    watched.stat.touch(watched.path, 2)
    watched.watch.tick()
    assert watched.applied.replies == ["new price"]
    assert watched.watch.loaded_at == watched.clock.now and watched.watch.error is None
    assert watched.watch.version.digest == read_rule_file(str(watched.path))[1].digest
    watched.watch.tick()
    assert watched.applied.replies == ["new price"]          # read once per change


def test_a_touched_file_with_the_same_bytes_swaps_nothing(watched):
    watched.stat.touch(watched.path, 2)
    watched.watch.tick()
    assert watched.applied.rules == [] and watched.watch.error is None


def test_a_bad_file_keeps_the_rules_and_is_reported_once_with_file_line_and_rule(watched, caplog):
    in_force = watched.watch.version
    watched.path.write_text(BAD, encoding="utf-8")
    watched.stat.touch(watched.path, 2)
    with caplog.at_level(logging.ERROR, "kf_plugin.reloading"):
        watched.watch.tick()
        watched.watch.tick()                                 # unchanged since: not read again
    expected = (f"{watched.path}:6: rule 'price': regex: invalid regular expression: missing ), unterminated "
                "subpattern at position 0")
    assert watched.applied.rules == [] and watched.watch.version == in_force
    assert expected in watched.watch.error and watched.watch.error_at == watched.clock.now
    assert caplog.text.count(expected) == 1 and "the rules in force stay" in caplog.text

    watched.path.write_text(TWO, encoding="utf-8")
    watched.stat.touch(watched.path, 3)
    watched.watch.tick()
    assert watched.applied.replies == ["new price"] and watched.watch.error is None


def test_rules_the_plugin_refuses_are_an_error_too(watched):
    watched.applied.refuse = KfError("rule 'price' uses require_online, which needs the WeChat API")
    watched.path.write_text(TWO, encoding="utf-8")
    watched.stat.touch(watched.path, 2)
    watched.watch.tick()
    assert "needs the WeChat API" in watched.watch.error


def test_a_vanished_file_is_an_error_and_its_return_a_reload(watched):
    os.unlink(watched.path)
    del watched.stat.stamps[str(watched.path)]
    watched.watch.tick()
    assert watched.watch.error == ("1 problem in rule file:\n"
                                   f"  {watched.path}: cannot read the file: No such file or directory")
    watched.path.write_text(TWO, encoding="utf-8")
    watched.stat.touch(watched.path, 1)
    watched.watch.tick()
    assert watched.applied.replies == ["new price"] and watched.watch.error is None


def test_a_signal_rereads_the_file_whatever_its_stamp(watched):
    watched.path.write_text(TWO, encoding="utf-8")           # same size and the fake mtime: only a request tells
    watched.watch.signalled()
    watched.watch.tick()
    assert watched.applied.replies == ["new price"]


def test_a_reload_without_a_rule_file_names_KF_RULES_and_never_raises_in_the_job(caplog):
    watch = RuleWatch(Applied())
    watch.loaded(None)
    watch.signalled()
    watch.tick()
    assert "there is no rule file to reload" in watch.error and "KF_RULES" in watch.error
    plugin = KfPlugin(rules=[Rule.build("price", keywords="价格", reply="p")])
    with pytest.raises(KfError, match="the rules were given in Python; set KF_RULES"):
        plugin.reload_rules()


def test_reload_rules_reports_in_the_watch_too(tmp_path):
    path = tmp_path / "rules.yaml"
    path.write_text(ONE, encoding="utf-8")
    plugin = KfPlugin(rules=path)
    path.write_text(BAD, encoding="utf-8")
    with pytest.raises(RuleFileError):
        plugin.reload_rules()
    assert plugin.rules.rules[0].action.text == "old price"
    path.write_text(TWO, encoding="utf-8")
    assert plugin.reload_rules().rules[0].action.text == "new price"


# -- SIGHUP ---------------------------------------------------------------------------------------------------

@pytest.fixture
def sighup():
    """SIGHUP at its default for the test, and as it was afterwards."""
    before = signal.signal(signal.SIGHUP, signal.SIG_DFL)
    yield
    signal.signal(signal.SIGHUP, before)


def test_sighup_is_taken_where_free_and_only_raises_the_flag(watched, sighup):
    assert install_sighup(watched.watch)
    watched.watch.tick()                                     # the job runs in this process
    watched.path.write_text(TWO, encoding="utf-8")
    os.kill(os.getpid(), signal.SIGHUP)                      # handled before the next bytecodes of this thread
    assert watched.applied.rules == []                       # nothing is loaded in the signal handler
    watched.watch.tick()
    assert watched.applied.replies == ["new price"]


def test_sighup_still_ends_a_process_where_the_watch_job_does_not_run(tmp_path):
    # The Werkzeug reloader's parent loads the app too, and never serves: SIGHUP must end it as before.
    script = ("import os, signal\n"
              "from kf_plugin.reloading import RuleWatch, install_sighup\n"
              "watch = RuleWatch(lambda rules, version: None)\n"
              "assert install_sighup(watch)\n"
              "os.kill(os.getpid(), signal.SIGHUP)\n"
              "print('survived')\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
                          cwd=Path(__file__).parents[1])
    assert (done.returncode, done.stdout) == (-signal.SIGHUP, "")


def test_sighup_taken_by_the_server_or_the_bot_is_left_alone(watched, sighup):
    def servers_own(signum, frame):
        pass
    signal.signal(signal.SIGHUP, servers_own)
    assert not install_sighup(watched.watch)
    assert signal.getsignal(signal.SIGHUP) is servers_own
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    assert not install_sighup(watched.watch)


def test_sighup_is_never_taken_from_another_thread(watched, sighup):
    taken = []
    thread = threading.Thread(target=lambda: taken.append(install_sighup(watched.watch)))
    thread.start()
    thread.join()
    assert taken == [False] and signal.getsignal(signal.SIGHUP) is signal.SIG_DFL


# -- reload requests and reports through Redis ---------------------------------------------------------------

def test_the_reload_counter_and_the_reports(redis_url):
    connection = redis.Redis.from_url(redis_url)
    versions = RuleVersions.of(connection, "kf:", "wxrules")
    assert versions.requested() == 0 and versions.reports() == []
    assert [versions.request_reload(), versions.request_reload()] == [1, 2]
    assert versions.requested() == 2 and 0 < connection.ttl("kf:{wxrules}:rules:reload")
    report = WorkerReport("host-a", 41, "/etc/bot/rules.yaml", "ab" * 32, 1_700_000_000.0, 2, None, None)
    versions.report(report, ttl=10)
    versions.report(WorkerReport("host-a", 42, None, None, None), ttl=10)
    assert [r.pid for r in versions.reports()] == [41, 42] and versions.reports()[0] == report
    connection.delete(versions.report_key("host-a:42"))      # as its time to live would
    assert versions.reports() == [report]
    assert connection.smembers(versions.index) == {b"host-a:41"}


def test_a_watch_follows_the_counter_of_each_channel(watched, redis_url):
    versions = RuleVersions.of(redis.Redis.from_url(redis_url), "kf:", "wxrules")
    versions.request_reload()                                # before this process started: nothing to do
    watch = RuleWatch(watched.applied, lambda: [versions], clock=watched.clock, stat=watched.stat, every=2)
    watch.loaded(read_rule_file(str(watched.path), watched.stat)[1])
    watch.tick()
    assert watched.applied.rules == [] and versions.reports()[0].reload == 1
    watched.path.write_text(TWO, encoding="utf-8")           # the stamp says nothing changed
    assert versions.request_reload() == 2
    watch.tick()
    assert watched.applied.replies == ["new price"]
    (report,) = versions.reports()
    assert (report.pid, report.reload, report.digest, report.loaded_at, report.error) == (
        os.getpid(), 2, watch.version.digest, watched.clock.now, None)
    assert 0 < redis.Redis.from_url(redis_url).pttl(versions.report_key(report.name)) <= report_ttl(2) * 1000


def test_an_unchanged_report_is_written_again_only_once_a_third_of_its_life_passed(watched):
    class Counting(RuleVersions):
        def __init__(self) -> None:
            super().__init__(None, "kf:{wxrules}:")
            self.written: List[WorkerReport] = []

        def requested(self) -> int:
            return 0

        def report(self, report: WorkerReport, ttl: float) -> None:
            self.written.append(report)

    channel = Counting()
    watch = RuleWatch(watched.applied, lambda: [channel], clock=watched.clock, stat=watched.stat, every=2)
    watch.loaded(read_rule_file(str(watched.path), watched.stat)[1])
    watch.tick()
    watched.clock.advance(2)
    watch.tick()
    assert len(channel.written) == 1                         # the same report, 8 s of its 10 s left
    watched.path.write_text(TWO, encoding="utf-8")
    watched.stat.touch(watched.path, 2)
    watch.tick()                                             # another digest: written at once
    assert len(channel.written) == 2 and channel.written[1].digest == watch.version.digest
    for _ in range(2):                                       # every other check: 4 s of its 10 s gone
        watched.clock.advance(2)
        watch.tick()
    assert len(channel.written) == 3 and channel.written[2] == channel.written[1]


def test_a_watch_without_redis_still_watches_its_file(watched, caplog):
    class Down(RuleVersions):
        def requested(self) -> int:
            raise redis.exceptions.ConnectionError("Connection refused")

        def report(self, report: WorkerReport, ttl: float) -> None:
            raise redis.exceptions.ConnectionError("Connection refused")

    down = Down(None, "kf:{wxrules}:")
    watch = RuleWatch(watched.applied, lambda: [down], clock=watched.clock, stat=watched.stat)
    watch.loaded(read_rule_file(str(watched.path), watched.stat)[1])
    watched.path.write_text(TWO, encoding="utf-8")
    watched.stat.touch(watched.path, 2)
    watch.tick()
    watch.tick()
    assert watched.applied.replies == ["new price"]
    assert caplog.text.count("the rule watch cannot reach Redis") == 1


# -- pushes in flight during reloads ---------------------------------------------------------------------------

def test_pushes_in_flight_are_answered_by_the_old_rules_or_the_new_never_dropped(tmp_path):
    path = tmp_path / "rules.yaml"
    path.write_text(ONE, encoding="utf-8")
    app = Flask("reloading")
    app.config.update(KF_TOKEN=TOKEN, KF_RULES=str(path), KF_RULES_WATCH=0)
    plugin = KfPlugin(app)
    answers: List[Tuple[int, str]] = []
    stop, answered = threading.Event(), threading.Semaphore(0)

    def push() -> None:
        client = WeChatTestClient(app)
        while not stop.is_set():
            answer = client.send_text("价格多少")
            answers.append((answer.status, answer.content))
            answered.release()

    threads = [threading.Thread(target=push) for _ in range(4)]
    for thread in threads:
        thread.start()
    try:
        for index in range(60):
            assert answered.acquire(timeout=10)              # a push between any two reloads
            path.write_text(TWO if index % 2 == 0 else ONE, encoding="utf-8")
            plugin.reload_rules()
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert len(answers) > 60
    assert set(answers) == {(200, "old price"), (200, "new price")}
