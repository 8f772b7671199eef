"""(a)/(b) kf_plugin's own endpoint (init_app), configured from the KF_* environment variables.

(a): memory state; (b): KF_REDIS_URL set. Duplicate detection (KF_DEDUPE_TTL) and the 48-hour window are
always on. Without KF_SECRET no WeChat API calls are made and no deadline thread pool exists; bench/throughput.py
--api sets KF_SECRET and KF_API_BASE_URL (a sandbox on loopback), so the token service and that pool run as
in a deployment.

``BENCH_PUSH=common``: the app also gets a bot router, registered as users do (``KfPlugin(app, router=router)``),
whose one handler answers every text with :data:`apps.common.REPLY_TEXT`; otherwise it has no bot handler.
``BENCH_KF_PLUGIN``: the checkout kf_plugin must be imported from (bench/throughput.py --kf-plugin); the app
refuses to start on any other. ``BENCH_METRICS=1``: the metrics are on (``KF_METRICS`` true, served at
/metrics), to measure what they cost; for several gunicorn workers, set ``PROMETHEUS_MULTIPROC_DIR`` too.
"""
from __future__ import annotations

import os

from flask import Flask

import kf_plugin
from kf_plugin import TEXT, KfPlugin, MessageRouter

from .common import AES_KEY, APPID, REPLY_TEXT, TOKEN, URL, common_push, safe_mode


def create_app() -> Flask:
    """The app; :raises RuntimeError: no KF_RULES, or kf_plugin imported from another checkout than asked for."""
    check_origin()
    app = Flask(__name__)
    app.config.update({name: value for name, value in os.environ.items() if name.startswith("KF_")})
    app.config.update(KF_TOKEN=TOKEN, KF_APPID=APPID, KF_URL=URL)
    if os.environ.get("BENCH_METRICS") == "1":
        app.config["KF_METRICS"] = True
    if safe_mode():
        app.config["KF_ENCODING_AES_KEY"] = AES_KEY
    if not app.config.get("KF_RULES"):
        raise RuntimeError("set KF_RULES to the benchmark's rule file")
    if common_push():
        KfPlugin(app, router=bot_router())
    else:
        KfPlugin(app)
    return app


def bot_router() -> MessageRouter:
    """The bot's own handlers: one, answering every text with the same text reply."""
    router = MessageRouter("bench bot")

    @router.on(TEXT, name="acknowledge")
    def acknowledge(message):
        return REPLY_TEXT

    return router


def check_origin() -> None:
    """With ``BENCH_KF_PLUGIN`` set, kf_plugin must come from that checkout: otherwise the run would measure
    other code than its results name."""
    wanted = os.environ.get("BENCH_KF_PLUGIN")
    if not wanted:
        return
    package = os.path.realpath(os.path.dirname(kf_plugin.__file__))
    if package != os.path.realpath(os.path.join(wanted, "kf_plugin")):
        raise RuntimeError(f"kf_plugin was imported from {package}, not from the checkout {wanted}")
