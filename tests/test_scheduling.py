"""Background jobs: on the bot's own scheduler (their own memory job store, and never a failed push), on
kf_plugin's own (daemon threads, stopped at exit without a word), and how a plugin's shutdown stops them."""
import subprocess
import sys
import threading
from pathlib import Path

import redis
from apscheduler.jobstores.redis import RedisJobStore
from apscheduler.schedulers.background import BackgroundScheduler

from kf_plugin.scheduling import JOBSTORE
from kf_plugin.testing import WeChatTestClient

from .lifecycle_apps import eventually

ROOT = Path(__file__).resolve().parent.parent


def test_a_scheduler_with_a_persistent_default_store_still_answers_every_push(api, make_app, redis_url):
    # RedisJobStore pickles its jobs, as SQLAlchemyJobStore does: the plugin's bound methods cannot be pickled.
    where = redis.Redis.from_url(redis_url).connection_pool.connection_kwargs
    store = RedisJobStore(host=where["host"], port=where["port"], db=where["db"])
    scheduler = BackgroundScheduler(jobstores={"default": store})
    scheduler.start()                                   # the bot starts its scheduler itself
    app = make_app(KF_SECRET=api.sandbox.secret, KF_APPID=api.sandbox.appid, KF_API_BASE_URL=api.url,
                   KF_RULES_WATCH=2, plugin_options={"scheduler": scheduler})
    try:
        client = WeChatTestClient(app)
        assert [client.send_text("人工").status for _ in range(3)] == [200] * 3
        assert {job.id for job in scheduler.get_jobs(jobstore=JOBSTORE)} == {
            f"kf_plugin:{api.sandbox.appid}:access-token", f"kf_plugin:{api.sandbox.appid}:handoff-sweep",
            f"kf_plugin:{api.sandbox.appid}:rules-watch"}
        assert scheduler.get_jobs(jobstore="default") == []    # nothing of ours in the bot's persistent store
    finally:
        scheduler.shutdown(wait=False)
        app.extensions["kf_plugin"].plugin.shutdown()


class BrokenScheduler(BackgroundScheduler):
    """A bot's scheduler that refuses every job."""

    def add_job(self, *args, **kwargs):
        raise RuntimeError("the job store is read-only")


def test_jobs_that_cannot_start_never_fail_a_push_and_are_reported_once(api, make_app, caplog):
    app = make_app(KF_SECRET=api.sandbox.secret, KF_APPID=api.sandbox.appid, KF_API_BASE_URL=api.url,
                   plugin_options={"scheduler": BrokenScheduler()})
    client = WeChatTestClient(app)
    assert client.send_text("人工").message_type == "transfer_customer_service"
    assert client.send_text("hello").body == "success"
    assert caplog.text.count("background jobs could not be started") == 1
    assert "read-only" in caplog.text
    app.extensions["kf_plugin"].plugin.shutdown()


def test_shutdown_takes_the_jobs_off_the_bots_scheduler_and_leaves_it_running(api, make_app):
    scheduler = BackgroundScheduler()
    scheduler.start()
    app = make_app(KF_SECRET=api.sandbox.secret, KF_APPID=api.sandbox.appid, KF_API_BASE_URL=api.url,
                   plugin_options={"scheduler": scheduler})
    plugin = app.extensions["kf_plugin"].plugin
    try:
        WeChatTestClient(app).send_text("hello")
        assert scheduler.get_jobs(jobstore=JOBSTORE) != []
        plugin.shutdown()
        assert scheduler.get_jobs(jobstore=JOBSTORE) == [] and scheduler.running
        plugin.shutdown()                                   # again: nothing more to do, nothing raised
        plugin.load_rules(plugin.rules)                     # puts the jobs back in a running plugin; not here
        assert scheduler.get_jobs(jobstore=JOBSTORE) == []
    finally:
        scheduler.shutdown(wait=False)


def test_own_jobs_run_on_daemon_threads_until_shutdown(make_app):
    app = make_app()
    plugin = app.extensions["kf_plugin"].plugin
    runs = []
    plugin.jobs.add("kf_plugin:test:probe", lambda: runs.append(threading.current_thread()), 0.01)
    WeChatTestClient(app).send_text("hello")               # the first push starts the jobs
    eventually(lambda: len(runs) >= 2)
    assert all(thread.daemon and thread.name.startswith("kf-jobs-") for thread in runs)
    plugin.shutdown()
    assert not plugin.jobs.scheduler.running
    eventually(lambda: not any(thread.is_alive() for thread in runs))
    count = len(runs)
    WeChatTestClient(app).send_text("hello")               # a shut-down plugin starts nothing again
    assert len(runs) == count and not plugin.jobs.scheduler.running


def test_a_plugin_shut_down_before_its_first_push_never_starts_its_jobs(make_app):
    app = make_app()
    plugin = app.extensions["kf_plugin"].plugin
    plugin.shutdown()
    assert WeChatTestClient(app).send_text("人工").message_type == "transfer_customer_service"
    assert plugin.jobs.scheduler is None


# A bot whose rule-watch job falls due every 10 ms, and whose own exit handler (registered after the plugin's,
# so run before it) takes a moment: the interpreter has closed its thread pools by then, and jobs keep falling due.
EXITING_BOT = """
import atexit, sys, time
from flask import Flask
from kf_plugin import KfPlugin
from kf_plugin.testing import WeChatTestClient

app = Flask("exiting_bot")
app.config.update(KF_TOKEN="token", KF_APPID="wx0123456789abcdef", KF_RULES=sys.argv[1], KF_RULES_WATCH=0.01)
KfPlugin(app)
assert WeChatTestClient(app).send_text("hello").status == 200
atexit.register(time.sleep, 0.3)
"""


def test_jobs_falling_due_while_the_process_exits_print_nothing(rules_file):
    done = subprocess.run([sys.executable, "-c", EXITING_BOT, str(rules_file)], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    # Before: "Error submitting job" and "cannot schedule new futures" tracebacks. On a loaded machine a 10 ms
    # job may still be running when it falls due again, which APScheduler reports as skipped: nothing else.
    skipped = "skipped: maximum number of running instances reached"
    assert [line for line in done.stderr.splitlines() if line and skipped not in line] == [], done.stderr
