"""``python -m example_app`` serves the bot (without ``KF_TOKEN``: on the demo credentials, the Official
Account's webhook and 微信客服's callback); ``--demo`` runs the end-to-end demo."""
from __future__ import annotations

import argparse
import logging
import sys
from typing import List

from flask import Flask

from . import DEMO_OPERATOR_SETTINGS, DEMO_WECOM_SETTINGS, create_app

log = logging.getLogger("example_app")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m example_app", description=__doc__)
    parser.add_argument("--demo", action="store_true",
                        help="start the bot on a free loopback port, send it WeChat pushes and WeCom callbacks, "
                             "show the answers, exit")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5000)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.demo else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    if args.demo:
        from .demo import run
        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # werkzeug sets its own logger to INFO
        return run()
    app = create_app()
    if app.config.get("KF_DEMO"):
        warn_demo(app, f"http://{args.host}:{args.port}")
    app.run(host=args.host, port=args.port)
    return 0


def warn_demo(app: Flask, base: str) -> None:
    """Say which demo credentials the app serves with, and where the operator's view is."""
    config = app.config
    log.warning("no KF_TOKEN in the environment: using the demo credentials (token %r) at %s",
                config["KF_TOKEN"], config["KF_URL"])
    if config.get("KF_WECOM_CORPID") == DEMO_WECOM_SETTINGS["KF_WECOM_CORPID"]:
        log.warning("no KF_WECOM_* keys either: 微信客服 at %s for the demo corp %s (token %r); its API calls go to %s",
                    config["KF_WECOM_URL"], config["KF_WECOM_CORPID"], config["KF_WECOM_TOKEN"],
                    config["KF_WECOM_API_BASE_URL"])
    for line in operator_view(app, base):
        log.warning("%s", line)


def operator_view(app: Flask, base: str) -> List[str]:
    """Where the status page and the metrics of ``app`` served at ``base`` are (with the demo's credentials,
    when it runs on them)."""
    settings = app.extensions["kf_plugin"].services.settings
    lines = []
    if settings.status_url:
        demo = settings.status_password == DEMO_OPERATOR_SETTINGS["KF_STATUS_PASSWORD"]
        credential = f" (user {settings.status_user!r}, password {settings.status_password!r})" if demo else ""
        lines.append(f"status page: {base}{settings.status_url}{credential}")
    if settings.metrics and settings.metrics.startswith("/"):
        lines.append(f"metrics: {base}{settings.metrics}")
    return lines


if __name__ == "__main__":
    sys.exit(main())
