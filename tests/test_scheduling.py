"""Background jobs on the bot's own scheduler: their own memory job store, and never a failed push."""
import redis
from apscheduler.jobstores.redis import RedisJobStore
from apscheduler.schedulers.background import BackgroundScheduler

from kf_plugin.scheduling import JOBSTORE
from kf_plugin.testing import WeChatTestClient


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
