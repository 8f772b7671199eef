"""``python -m example_app`` serves the bot; ``--demo`` runs the end-to-end demo."""
from __future__ import annotations

import argparse
import logging
import sys

from . import create_app


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m example_app", description=__doc__)
    parser.add_argument("--demo", action="store_true",
                        help="start the bot on a free loopback port, send it WeChat pushes, show the answers, exit")
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
        logging.getLogger("example_app").warning(
            "no KF_TOKEN in the environment: using the demo credentials (token %r)", app.config["KF_TOKEN"])
    app.run(host=args.host, port=args.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
