"""Transfer replies while the WeChat API is slow: nothing on the request path may wait on it.

    python bench/slow_api.py [--latency 3] [--requests 500]

The example bot runs under gunicorn (1 sync worker) with agent-aware transfer rules
(require_online, fallback_to_pool, a notice after the hand-off); the sandbox standing in
for the WeChat API answers every call after ``--latency`` seconds. Pushes that trigger a
transfer are sent one after another; the script prints p50, p99 and the slowest reply.
Target: p99 < 50 ms.
"""
from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

from kf_plugin.testing import PushSigner, message_xml
from kf_plugin.testing.sandbox import Sandbox

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "bench-token"
RULES = """\
version: 1
fallback_text: "客服暂时不在线"
rules:
  - name: human-if-online
    keywords: ["人工"]
    kf_account: "wang@gh_bench"
    require_online: true
    fallback_to_pool: true
    notice: "您好，客服马上就来"
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--latency", type=float, default=3.0, help="seconds the API takes to answer")
    parser.add_argument("--requests", type=int, default=500)
    args = parser.parse_args()

    sandbox = Sandbox()
    sandbox.add_agent("wang@gh_bench", "小王", wx="wang_wechat", online=True)
    sandbox.faults.add_latency(args.latency)      # every API call, the token included
    with sandbox.serve() as api, tempfile.TemporaryDirectory() as scratch:
        rules = Path(scratch) / "rules.yaml"
        rules.write_text(RULES, encoding="utf-8")
        port = free_port()
        env = {**{k: v for k, v in os.environ.items() if not k.startswith("KF_")},
               "KF_TOKEN": TOKEN, "KF_APPID": sandbox.appid, "KF_SECRET": sandbox.secret,
               "KF_API_BASE_URL": api.url, "KF_RULES": str(rules), "PYTHONPATH": str(ROOT)}
        server = subprocess.Popen([sys.executable, "-m", "gunicorn", "-w", "1", "-b", f"127.0.0.1:{port}",
                                   "example_app:create_app()"], cwd=ROOT, env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            url = f"http://127.0.0.1:{port}/wechat"
            deadline = time.monotonic() + 30
            while True:
                try:
                    requests.get(f"http://127.0.0.1:{port}/", timeout=1)
                    break
                except requests.ConnectionError:
                    if time.monotonic() > deadline or server.poll() is not None:
                        raise SystemExit("the bot did not start")
                    time.sleep(0.1)
            signer = PushSigner(TOKEN)
            http = requests.Session()
            latencies, statuses, transfers = [], {}, 0
            for number in range(args.requests):
                query, body = signer.sign(message_xml(text="我要人工", msg_id=10_000 + number, sender=f"o{number % 50}"))
                started = time.perf_counter()
                answer = http.post(url, params=query, data=body, timeout=10)
                latencies.append((time.perf_counter() - started) * 1000)
                statuses[answer.status_code] = statuses.get(answer.status_code, 0) + 1
                transfers += "transfer_customer_service" in answer.text
        finally:
            server.terminate()
            server.wait(10)
    ordered = sorted(latencies)
    p99 = ordered[max(0, int(len(ordered) * 0.99) - 1)]
    slow = sum(1 for ms in latencies if ms >= 50)
    print(f"API latency {args.latency:g} s; {args.requests} transfer pushes, one after another")
    print(f"statuses {statuses}; transfer replies {transfers}")
    print(f"p50 {statistics.median(latencies):.1f} ms, p99 {p99:.1f} ms, slowest {ordered[-1]:.1f} ms "
          f"(the first reply: {latencies[0]:.1f} ms); {slow} replies took ≥ 50 ms")
    print(f"target p99 < 50 ms: {'met' if p99 < 50 else 'MISSED'}")
    return 0 if p99 < 50 and statuses == {200: args.requests} else 1


if __name__ == "__main__":
    sys.exit(main())
