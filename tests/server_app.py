"""The app the real-server tests run under gunicorn (``tests.server_app:create_app()``): plain mode, no rules."""
from __future__ import annotations

from flask import Flask

from kf_plugin import KfPlugin

from .conftest import APPID, TOKEN


def create_app() -> Flask:
    app = Flask("kf_server_test")
    app.config.update(KF_TOKEN=TOKEN, KF_APPID=APPID)
    KfPlugin(app)
    return app
