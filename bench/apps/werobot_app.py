"""(d) WeRoBot 1.13: a filter returning its TransferCustomerServiceReply, through werobot.contrib.flask.make_view.

Sessions are off (SESSION_STORAGE=False): the job needs none, and WeRoBot's default (SQLite, one write per
push) would only slow it down. ``BENCH_WEROBOT_SESSION=sqlite`` keeps WeRoBot's default instead.
"""
from __future__ import annotations

import os
import re
import tempfile

from flask import Flask
from werobot import WeRoBot
from werobot.contrib.flask import make_view
from werobot.replies import TransferCustomerServiceReply

from .common import AES_KEY, APPID, TOKEN, TRIGGER, URL, safe_mode


def create_app() -> Flask:
    if os.environ.get("BENCH_WEROBOT_SESSION") == "sqlite":
        from werobot.session.sqlitestorage import SQLiteStorage
        path = os.path.join(tempfile.mkdtemp(prefix="bench-werobot-"), "session.sqlite3")
        session = SQLiteStorage(path)
    else:
        session = False
    robot = WeRoBot(token=TOKEN, app_id=APPID, encoding_aes_key=AES_KEY if safe_mode() else None,
                    SESSION_STORAGE=session)

    @robot.filter(re.compile(".*?" + re.escape(TRIGGER), re.S))
    def transfer(message):
        return TransferCustomerServiceReply(message=message)

    app = Flask(__name__)
    app.add_url_rule(URL, endpoint="werobot", view_func=make_view(robot), methods=["GET", "POST"])
    return app
