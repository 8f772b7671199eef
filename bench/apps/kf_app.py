"""(a)/(b) kf_plugin's own endpoint (init_app), configured from the KF_* environment variables.

(a): memory state; (b): KF_REDIS_URL set. KF_SECRET is never set here, so no WeChat API calls are made and
no deadline thread pool exists; duplicate detection (KF_DEDUPE_TTL) and the 48-hour window are always on.
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
    app.config.pop("KF_SECRET", None)
    if safe_mode():
        app.config["KF_ENCODING_AES_KEY"] = AES_KEY
    if not app.config.get("KF_RULES"):
        raise RuntimeError("set KF_RULES to the benchmark's rule file")
    KfPlugin(app)
    return app
