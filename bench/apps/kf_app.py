"""(a)/(b) kf_plugin's own endpoint (init_app), configured from the KF_* environment variables.

(a): memory state; (b): KF_REDIS_URL set. Duplicate detection (KF_DEDUPE_TTL) and the 48-hour window are
always on. Without KF_SECRET no WeChat API calls are made and no deadline thread pool exists; bench/throughput.py
--api sets KF_SECRET and KF_API_BASE_URL (a sandbox on loopback), so the token service and that pool run as
in a deployment.
"""
from __future__ import annotations

import os

from flask import Flask

from kf_plugin import KfPlugin

from .common import AES_KEY, APPID, TOKEN, URL, safe_mode


def create_app() -> Flask:
    app = Flask(__name__)
    app.config.update({name: value for name, value in os.environ.items() if name.startswith("KF_")})
    app.config.update(KF_TOKEN=TOKEN, KF_APPID=APPID, KF_URL=URL)
    if safe_mode():
        app.config["KF_ENCODING_AES_KEY"] = AES_KEY
    if not app.config.get("KF_RULES"):
        raise RuntimeError("set KF_RULES to the benchmark's rule file")
    KfPlugin(app)
    return app
