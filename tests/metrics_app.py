"""The app the multiprocess metrics test runs under gunicorn (``tests.metrics_app:create_app()``): plain mode, the
rules of ``KF_RULES``, metrics at /metrics."""
from __future__ import annotations

import os

from flask import Flask

from kf_plugin import KfPlugin

from .conftest import APPID, TOKEN


def create_app() -> Flask:
    app = Flask("kf_metrics_test")
    app.config.update(KF_TOKEN=TOKEN, KF_APPID=APPID, KF_RULES=os.environ["KF_RULES"], KF_METRICS=True)
    KfPlugin(app)
    return app
