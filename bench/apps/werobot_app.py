"""(d)/(e) WeRoBot 1.13: a filter returning its TransferCustomerServiceReply, through werobot.contrib.flask.make_view.

(d) as WeRoBot comes: its default session storage, SQLite (a read and a committed write per push), in a file
of a fresh temporary directory instead of ./werobot_session. (e) ``BENCH_WEROBOT_SESSION=off``: sessions off
(SESSION_STORAGE=False), which this job does not need.

``BENCH_PUSH=common``: after the filter, a text handler answers every other text with
:data:`apps.common.REPLY_TEXT` (WeRoBot makes the returned string a TextReply).
"""
from __future__ import annotations

import os
import re
import tempfile

from flask import Flask
from werobot import WeRoBot
from werobot.contrib.flask import make_view
from werobot.replies import TransferCustomerServiceReply

from .common import AES_KEY, APPID, REPLY_TEXT, TOKEN, TRIGGER, URL, common_push, safe_mode


def create_app() -> Flask:
    if os.environ.get("BENCH_WEROBOT_SESSION") == "off":
        session = False
    else:
        from werobot.session.sqlitestorage import SQLiteStorage
        session = SQLiteStorage(os.path.join(tempfile.mkdtemp(prefix="bench-werobot-"), "werobot_session"))
    robot = WeRoBot(token=TOKEN, app_id=APPID, encoding_aes_key=AES_KEY if safe_mode() else None,
                    SESSION_STORAGE=session)

    @robot.filter(re.compile(".*?" + re.escape(TRIGGER), re.S))
    def transfer(message):
        return TransferCustomerServiceReply(message=message)

    if common_push():
        @robot.text
        def acknowledge(message):
            return REPLY_TEXT

    app = Flask(__name__)
    app.add_url_rule(URL, endpoint="werobot", view_func=make_view(robot), methods=["GET", "POST"])
    return app
