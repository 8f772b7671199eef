"""Memory mode's worst case: the resident memory the bounded in-process stores can reach.

Without KF_REDIS_URL each worker keeps the 48-hour window of at most KF_MEMORY_USERS users and at most
KF_MEMORY_REPLIES replies for WeChat's retries. This fills both stores to their bounds the costliest way — every
user holding the most grants a record keeps, every reply a long text reply — in a fresh process, and prints the
growth of its resident set size (RSS) over an empty plugin's, with the stores' bounds taken from the settings
exactly as ``init_app`` reads them.

    python bench/memory_bound.py                         # the defaults
    python bench/memory_bound.py --users 200000 --replies 100000
"""
from __future__ import annotations

import argparse
import gc
import platform
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kf_plugin.config import SETTINGS, read_setting  # noqa: E402
from kf_plugin.services import open_shared  # noqa: E402
from kf_plugin.state.base import MAX_GRANTS_PER_USER, Grant  # noqa: E402

# A passive text reply near WeChat's 2,048-byte limit (Chinese text, rendered as the webhook stores it).
LONG_REPLY = ("<xml><ToUserName><![CDATA[oUser0123456789abcdefghijkl]]></ToUserName><FromUserName><![CDATA["
              "gh_0123456789ab]]></FromUserName><CreateTime>1764300000</CreateTime><MsgType><![CDATA[text]]>"
              "</MsgType><Content><![CDATA[" + "客服回复" * 170 + "]]></Content></xml>")


def rss_mib() -> float:
    """This process's resident set size in MiB (Linux /proc; psutil elsewhere)."""
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    import psutil
    return psutil.Process().memory_info().rss / 2 ** 20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=SETTINGS["KF_MEMORY_USERS"].default)
    parser.add_argument("--replies", type=int, default=SETTINGS["KF_MEMORY_REPLIES"].default)
    args = parser.parse_args()
    settings = {name: read_setting({"KF_MEMORY_USERS": args.users, "KF_MEMORY_REPLIES": args.replies}, name)
                for name in SETTINGS}
    gc.collect()
    before = rss_mib()
    shared = open_shared(settings)
    now = 1_764_300_000.0
    # Twice the bound: the stores must stay at their bounds, whatever comes.
    for n in range(2 * args.users):
        openid = f"o{n:027d}"
        for g in range(MAX_GRANTS_PER_USER):
            shared.window.add_grant(openid, Grant("message", 5, now + 3600 + g), now)
    gc.collect()
    window = rss_mib()
    for n in range(2 * args.replies):
        key = f"{n:032x}"                               # push keys are 32 hex digits
        shared.replay.claim(key, 3600)
        shared.replay.complete(key, LONG_REPLY + str(n), 3600)   # distinct strings, as real replies are
    gc.collect()
    after = rss_mib()
    print(f"python {platform.python_version()}, {platform.platform()}")
    print(f"window: {args.users:,} users × {MAX_GRANTS_PER_USER} grants: {window - before:.1f} MiB")
    print(f"replies: {args.replies:,} × {len(LONG_REPLY.encode())} bytes of XML: {after - window:.1f} MiB")
    print(f"total growth of RSS: {after - before:.1f} MiB")


if __name__ == "__main__":
    main()
