"""Soak test: the example bot under gunicorn (1 sync worker) on a loopback port, fed signed pushes at a
steady, bounded rate for M minutes while the worker's resident memory is sampled.

    .venv/bin/python bench/soak.py --minutes 10 --rate 150 [--redis redis://127.0.0.1:6379/0] [--safe]

The traffic is a fixed mix: greetings, help, "转人工", complaints, menu clicks (a designated agent, a session
hand-off), follows, other text, retried duplicates of recent pushes (whose answers must equal the first
delivery's), and hostile requests (bad or missing signatures, stale timestamps, garbage, entity bombs, non-UTF-8,
oversized bodies, unsigned GETs). Senders are drawn from a pool of ``--users`` openids, as a real account's
users come back.

At the end it prints the requests sent, by status and by kind, the 5xx count, answers that were not what the
request calls for, and the worker's RSS at the start (after the warm-up), the end, the maximum, and the growth.
Exit status: 0 when there was no 5xx, no transport error, no unexpected answer, no retried push answered
differently, the worker was never replaced, and the RSS grew by less than ``--max-growth-mb`` (10); 1 otherwise.

Only 127.0.0.1 is contacted; the run is bounded in time and requests and stops by itself (gunicorn included).
"""
from __future__ import annotations

import argparse
import collections
import http.client
import json
import os
import platform
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Deque, Dict, List, Optional, Tuple

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from kf_plugin.testing import PushSigner, message_xml  # noqa: E402

TOKEN = "kf-soak-token"
APPID = "wx00000000soak0000"
AES_KEY = "kfSoakEncodingAesKey0123456789abcdefghijklm"
ACCOUNT = "gh_soak_account"
PATH = "/wechat"

# (kind, weight). Every kind has a builder below and an expectation.
MIX: List[Tuple[str, int]] = [
    ("greeting", 20), ("help", 5), ("handoff-text", 12), ("complaint", 5), ("other-text", 10),
    ("click-vip", 6), ("click-session", 4), ("click-unmatched", 3), ("subscribe", 4), ("image", 3),
    ("retry", 14),
    ("hostile-bad-signature", 2), ("hostile-no-signature", 1), ("hostile-stale", 2), ("hostile-garbage", 2),
    ("hostile-entities", 1), ("hostile-not-utf8", 1), ("hostile-oversize", 1), ("hostile-get-unsigned", 1),
    ("get-verify", 1), ("hostile-plain-in-safe", 2),
]


@dataclass
class Request:
    kind: str
    method: str
    query: Dict[str, str]
    body: bytes
    expect_status: int
    check: Optional[Callable[[str], bool]] = None     # on the (decrypted) body of a 200
    push_id: Optional[int] = None                     # the push this delivers (retries compare answers)


@dataclass
class Stats:
    by_status: collections.Counter = field(default_factory=collections.Counter)
    by_kind: collections.Counter = field(default_factory=collections.Counter)
    unexpected: collections.Counter = field(default_factory=collections.Counter)
    unexpected_examples: List[str] = field(default_factory=list)
    transport_errors: collections.Counter = field(default_factory=collections.Counter)
    retries_compared: int = 0
    retries_differing: int = 0
    latencies: List[float] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Traffic:
    """Builds the requests of the mix. Thread-safe."""

    def __init__(self, signer: PushSigner, safe: bool, users: int, seed: int):
        self.signer = signer
        self.safe = safe
        self.users = [f"oSoakUser{n:08d}" for n in range(users)]
        self.random = random.Random(seed)
        self.lock = threading.Lock()
        self.msg_ids = iter(range(seed * 10**9, 10**18))
        self.kinds = [k for k, _ in MIX if k != "hostile-plain-in-safe" or safe]
        self.weights = [w for k, w in MIX if k != "hostile-plain-in-safe" or safe]
        # Recent pushes that can be retried: (push_id, query, body, sent_at); their first answers by push id.
        self.recent: Deque[Tuple[int, Dict[str, str], bytes, float]] = collections.deque(maxlen=500)
        self.first_answers: "collections.OrderedDict[int, str]" = collections.OrderedDict()

    def next(self) -> Request:
        with self.lock:
            kind = self.random.choices(self.kinds, self.weights)[0]
            user = self.random.choice(self.users)
            msg_id = next(self.msg_ids)
            if kind == "retry":
                now = time.time()
                fresh = [p for p in self.recent if now - p[3] < 20]   # well inside KF_DEDUPE_TTL (60 s)
                retried = self.random.choice(fresh) if fresh else None
        if kind == "retry":
            if retried is None:
                kind = "greeting"
            else:
                push_id, query, body, _ = retried
                return Request("retry", "POST", query, body, 200, push_id=push_id)
        return self._build(kind, user, msg_id)

    def remember(self, request: Request, answer: str) -> Optional[bool]:
        """Record a first delivery's answer, or compare a retry's with it (``True`` when equal)."""
        if request.push_id is None:
            return None
        with self.lock:
            if request.kind != "retry":
                self.first_answers[request.push_id] = answer
                while len(self.first_answers) > 5000:
                    self.first_answers.popitem(last=False)
                self.recent.append((request.push_id, request.query, request.body, time.time()))
                return None
            first = self.first_answers.get(request.push_id)
        return None if first is None else first == answer

    def _push(self, kind: str, xml: str, check: Callable[[str], bool], push_id: int) -> Request:
        query, body = self.signer.sign(xml)
        return Request(kind, "POST", query, body, 200, check, push_id)

    def _build(self, kind: str, user: str, msg_id: int) -> Request:
        text = lambda t: message_xml(text=t, sender=user, account=ACCOUNT, msg_id=msg_id)  # noqa: E731
        event = lambda e, k=None: message_xml(event=e, key=k, sender=user, account=ACCOUNT,  # noqa: E731
                                              create_time=int(time.time()) - msg_id % 100_000)
        # Events are keyed by sender + CreateTime + Event + EventKey: the CreateTime offset keeps them distinct.
        if kind == "greeting":
            return self._push(kind, text(self.random.choice(["你好", "hello", "hi"])), has("<Content>", "示例机器人"),
                              msg_id)
        if kind == "help":
            return self._push(kind, text("帮助"), has("转人工"), msg_id)
        if kind == "handoff-text":
            return self._push(kind, text(self.random.choice(["转人工", "我要找人工客服", "客服在吗"])),
                              has("transfer_customer_service"), msg_id)
        if kind == "complaint":
            return self._push(kind, text("我要投诉，订单 " + str(msg_id)), has("transfer_customer_service"), msg_id)
        if kind == "other-text":
            return self._push(kind, text("随便说点什么 " + "x" * self.random.randrange(0, 400)), has("收到"), msg_id)
        if kind == "click-vip":
            return self._push(kind, event("CLICK", "CONTACT_VIP"), has("vip1@gh_example"), msg_id)
        if kind == "click-session":
            return self._push(kind, event("CLICK", "TALK_TO_AGENT"), has("transfer_customer_service"), msg_id)
        if kind == "click-unmatched":
            return self._push(kind, event("CLICK", "MENU_" + str(msg_id % 7)), lambda b: b == "success", msg_id)
        if kind == "subscribe":
            return self._push(kind, event("subscribe", ""), has("感谢关注"), msg_id)
        if kind == "image":
            xml = message_xml(msg_type="image", sender=user, account=ACCOUNT, msg_id=msg_id,
                              extra={"PicUrl": "http://127.0.0.1/p.jpg", "MediaId": "media" + str(msg_id)})
            return self._push(kind, xml, lambda b: b == "success", msg_id)
        return self._hostile(kind, user, msg_id)

    def _hostile(self, kind: str, user: str, msg_id: int) -> Request:
        valid = message_xml(text="转人工", sender=user, account=ACCOUNT, msg_id=msg_id)
        query, body = self.signer.sign(valid)
        if kind == "hostile-bad-signature":
            return Request(kind, "POST", {**query, "signature": "0" * 40}, body, 403)
        if kind == "hostile-no-signature":
            return Request(kind, "POST", {k: v for k, v in query.items() if k != "signature"}, body, 403)
        if kind == "hostile-stale":
            return Request(kind, "POST", *self.signer.sign(valid, timestamp=str(int(time.time()) - 3600)), 403)
        if kind == "hostile-get-unsigned":
            return Request(kind, "GET", {"echostr": "x", "timestamp": str(int(time.time()))}, b"", 403)
        if kind == "get-verify":
            return Request(kind, "GET", self.signer.verification(f"echo{msg_id}"), b"", 200,
                           lambda b, e=f"echo{msg_id}": b == e)
        if kind == "hostile-plain-in-safe":
            return Request(kind, "POST", *self.signer.sign(valid, encrypt=False), 403)
        # The rest are refused as a body: a correctly signed query (plain, or aes with a matching msg_signature).
        if kind == "hostile-garbage":
            payload = bytes(self.random.getrandbits(8) for _ in range(self.random.randrange(1, 300)))
            body = b"<xml><ToUserName>" + payload.replace(b"\x00", b"") + b"</xml"
            status = 400
        elif kind == "hostile-entities":
            body = (b'<?xml version="1.0"?><!DOCTYPE xml [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;">]>'
                    b"<xml><Content>&b;</Content></xml>")
            status = 400
        elif kind == "hostile-not-utf8":
            body = valid.encode("gbk")
            status = 400
        else:  # hostile-oversize
            body = b"<xml>" + b"A" * (70 * 1024) + b"</xml>"
            status = 413
        return Request(kind, "POST", self.signed_query(query, body), body, status)

    def signed_query(self, query: Dict[str, str], body: bytes) -> Dict[str, str]:
        plain = {k: query[k] for k in ("signature", "timestamp", "nonce")}
        if not self.safe:
            return plain
        # In safe mode the body is read as an encrypted envelope: these bodies fail before its msg_signature
        # is checked (size, UTF-8, then XML), so a made-up one does.
        return {**plain, "encrypt_type": "aes", "msg_signature": "0" * 40}


def has(*fragments: str) -> Callable[[str], bool]:
    return lambda body: all(f in body for f in fragments)


class Server:
    """gunicorn serving ``example_app:create_app()`` with 1 sync worker on a free loopback port."""

    def __init__(self, port: int, env: Dict[str, str], log_path: Path):
        self.port = port
        self.log = open(log_path, "wb")
        command = [sys.executable, "-m", "gunicorn", "--workers", "1", "--worker-class", "sync",
                   "--bind", f"127.0.0.1:{port}", "--chdir", str(ROOT), "--timeout", "30",
                   "--graceful-timeout", "5", "--log-level", "warning", "example_app:create_app()"]
        self.command = command
        self.process = subprocess.Popen(command, env=env, stdout=self.log, stderr=subprocess.STDOUT,
                                        start_new_session=True)

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gunicorn exited with {self.process.returncode}; see {self.log.name}")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                conn.request("GET", "/")
                if conn.getresponse().status == 200:
                    conn.close()
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError("gunicorn did not answer in time")

    def worker_pids(self) -> List[int]:
        try:
            return [c.pid for c in psutil.Process(self.process.pid).children()]
        except psutil.NoSuchProcess:
            return []

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(5)
        self.log.close()


def send(port: int, request: Request, timeout: float = 10.0) -> Tuple[int, str]:
    url = PATH + "?" + urllib.parse.urlencode(request.query)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        headers = {"Content-Type": "text/xml"} if request.method == "POST" else {}
        conn.request(request.method, url, body=request.body if request.method == "POST" else None, headers=headers)
        response = conn.getresponse()
        return response.status, response.read().decode("utf-8", "replace")
    finally:
        conn.close()


def run_load(port: int, traffic: Traffic, signer: PushSigner, rate: float, seconds: float, threads: int,
             stats: Stats, stop: threading.Event) -> int:
    """Send ``rate`` requests a second for ``seconds`` (paced on a shared schedule); the number sent."""
    total = int(rate * seconds)
    counter = iter(range(total))
    counter_lock = threading.Lock()
    start = time.monotonic()

    def worker() -> None:
        while not stop.is_set():
            with counter_lock:
                index = next(counter, None)
            if index is None:
                return
            due = start + index / rate
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            request = traffic.next()
            began = time.monotonic()
            try:
                status, body = send(port, request)
            except Exception as exc:  # counted and reported; the soak goes on
                with stats.lock:
                    stats.transport_errors[type(exc).__name__] += 1
                    stats.by_kind[request.kind] += 1
                continue
            elapsed = time.monotonic() - began
            answer = body
            if status == 200 and request.method == "POST" and "<Encrypt>" in body:
                try:
                    answer = signer.open_reply(body)
                except Exception as exc:  # a reply we cannot open is an unexpected answer
                    answer = f"<unopenable reply: {exc!r}>"
            same = traffic.remember(request, answer) if status == 200 else None
            ok = status == request.expect_status and (status != 200 or request.check is None or request.check(answer))
            with stats.lock:
                stats.by_status[status] += 1
                stats.by_kind[request.kind] += 1
                if len(stats.latencies) < 2_000_000:
                    stats.latencies.append(elapsed)
                if same is not None:
                    stats.retries_compared += 1
                    stats.retries_differing += not same
                if not ok:
                    stats.unexpected[request.kind] += 1
                    if len(stats.unexpected_examples) < 10:
                        stats.unexpected_examples.append(f"{request.kind}: {status} {answer[:200]!r}")

    pool = [threading.Thread(target=worker, daemon=True) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join(seconds + 120)
    return sum(stats.by_kind.values())


def forget_redis_keys(url: str, prefix: str) -> None:
    """Delete the keys this soak made (its own prefix), so it leaves nothing behind in a shared Redis."""
    import redis
    connection = redis.Redis.from_url(url)
    batch = []
    for key in connection.scan_iter(match=prefix + "*", count=1000):
        batch.append(key)
        if len(batch) == 1000:
            connection.delete(*batch)
            batch = []
    if batch:
        connection.delete(*batch)


def trend(samples: List[Tuple[float, int, int]]) -> float:
    """The slope of RSS over time, in MB per minute (least squares)."""
    xs = [t / 60 for t, _, _ in samples]
    ys = [rss / 2**20 for _, _, rss in samples]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    var = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / var if var else float("nan")


def percentile(values: List[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0, help="how long to send traffic (default 10)")
    parser.add_argument("--rate", type=float, default=150.0, help="requests per second (default 150; at most 500)")
    parser.add_argument("--redis", metavar="URL", help="KF_REDIS_URL for the worker (shared state in Redis)")
    parser.add_argument("--safe", action="store_true", help="safe mode: pushes encrypted with an EncodingAESKey")
    parser.add_argument("--users", type=int, default=2000, help="distinct senders (default 2000)")
    parser.add_argument("--warmup", type=float, default=90.0,
                        help="seconds of traffic before the RSS baseline (default 90: longer than KF_DEDUPE_TTL, "
                             "60 s, so the replay cache is full by then)")
    parser.add_argument("--sample-every", type=float, default=5.0, help="seconds between RSS samples (default 5)")
    parser.add_argument("--threads", type=int, default=4, help="client threads (default 4)")
    parser.add_argument("--max-growth-mb", type=float, default=10.0, help="RSS growth that fails the soak")
    parser.add_argument("--seed", type=int, default=None, help="seed of the traffic mix (default: from the clock)")
    parser.add_argument("--json", metavar="FILE", help="also write the figures to FILE as JSON")
    args = parser.parse_args(argv)
    if not 0 < args.rate <= 500:
        parser.error("--rate must be in (0, 500]: this is a soak, not a stress test")
    if not 0 < args.minutes <= 120:
        parser.error("--minutes must be in (0, 120]")

    seed = args.seed if args.seed is not None else int(time.time()) % 100_000
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("KF_")}
    env.update(KF_TOKEN=TOKEN, KF_APPID=APPID, PYTHONPATH=str(ROOT), KF_REDIS_PREFIX=f"kfsoak{os.getpid()}:")
    if args.safe:
        env["KF_ENCODING_AES_KEY"] = AES_KEY
    if args.redis:
        env["KF_REDIS_URL"] = args.redis
    signer = PushSigner(TOKEN, AES_KEY if args.safe else None, APPID)
    traffic = Traffic(signer, args.safe, args.users, seed)
    log_path = Path(tempfile.gettempdir()) / f"kf-soak-{os.getpid()}.log"
    server = Server(port, env, log_path)
    stop = threading.Event()
    samples: List[Tuple[float, int, int]] = []   # (seconds since start, worker pid, rss bytes)
    stats = Stats()
    began = time.monotonic()
    seconds = args.minutes * 60

    def on_signal(signum: int, frame: object) -> None:
        stop.set()
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    def sampler() -> None:
        while not stop.wait(args.sample_every):
            pids = server.worker_pids()
            for pid in pids[:1]:
                try:
                    samples.append((time.monotonic() - began, pid, psutil.Process(pid).memory_info().rss))
                except psutil.NoSuchProcess:
                    pass

    try:
        server.wait_ready()
        workers = server.worker_pids()
        print(f"soak: gunicorn pid {server.process.pid}, worker {workers}, http://127.0.0.1:{port}{PATH}, "
              f"{args.rate:g} req/s for {args.minutes:g} min{', redis ' + args.redis if args.redis else ''}"
              f"{', safe mode' if args.safe else ''}, seed {seed}, log {log_path}", flush=True)
        sampling = threading.Thread(target=sampler, daemon=True)
        sampling.start()
        progress_stop = threading.Event()

        def progress() -> None:
            while not progress_stop.wait(60):
                with stats.lock:
                    sent = sum(stats.by_kind.values())
                    fivexx = sum(n for s, n in stats.by_status.items() if s >= 500)
                rss = samples[-1][2] / 2**20 if samples else float("nan")
                print(f"soak: {time.monotonic() - began:6.0f} s  sent {sent}  5xx {fivexx}  "
                      f"unexpected {sum(stats.unexpected.values())}  rss {rss:.1f} MB", flush=True)
        threading.Thread(target=progress, daemon=True).start()
        sent = run_load(port, traffic, signer, args.rate, seconds, args.threads, stats, stop)
        progress_stop.set()
        duration = time.monotonic() - began
        stop.set()
        sampling.join(args.sample_every + 5)
        # One last sample after the traffic.
        for pid in server.worker_pids()[:1]:
            samples.append((time.monotonic() - began, pid, psutil.Process(pid).memory_info().rss))
    finally:
        stop.set()
        server.stop()
        if args.redis:
            forget_redis_keys(args.redis, env["KF_REDIS_PREFIX"])

    log_text = log_path.read_text("utf-8", "replace")
    tracebacks = log_text.count("Traceback")
    worker_ids = sorted({pid for _, pid, _ in samples})
    after_warmup = [s for s in samples if s[0] >= args.warmup] or samples
    mb = 2**20
    rss_start = after_warmup[0][2] / mb if after_warmup else float("nan")
    rss_end = samples[-1][2] / mb if samples else float("nan")
    rss_max = max(s[2] for s in samples) / mb if samples else float("nan")
    growth = rss_end - rss_start
    slope = trend(after_warmup) if len(after_warmup) >= 3 else float("nan")   # MB per minute, least squares
    fivexx = sum(n for s, n in stats.by_status.items() if s >= 500)
    transport = sum(stats.transport_errors.values())
    unexpected = sum(stats.unexpected.values())

    figures = {
        "command": " ".join([".venv/bin/python", "bench/soak.py"] + (argv if argv is not None else sys.argv[1:])),
        "machine": f"{platform.node()} {platform.system()} {platform.release()} {platform.machine()}, "
                   f"{os.cpu_count()} cores, {psutil.virtual_memory().total / 2**30:.0f} GiB, "
                   f"Python {platform.python_version()}",
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "seconds": round(duration, 1), "rate_target": args.rate, "rate_achieved": round(sent / duration, 1),
        "sent": sent, "by_status": dict(sorted(stats.by_status.items())),
        "by_kind": dict(sorted(stats.by_kind.items())),
        "5xx": fivexx, "transport_errors": dict(stats.transport_errors), "unexpected": dict(stats.unexpected),
        "unexpected_examples": stats.unexpected_examples, "retries_compared": stats.retries_compared,
        "retries_differing": stats.retries_differing,
        "latency_ms": {"p50": round(percentile(stats.latencies, 0.5) * 1000, 2),
                       "p99": round(percentile(stats.latencies, 0.99) * 1000, 2),
                       "max": round(max(stats.latencies, default=float("nan")) * 1000, 2)},
        "rss_mb": {"start_after_warmup": round(rss_start, 2), "end": round(rss_end, 2), "max": round(rss_max, 2),
                   "growth": round(growth, 2), "first_sample": round(samples[0][2] / mb, 2) if samples else None,
                   "trend_mb_per_min": round(slope, 3)},
        "samples": len(samples), "worker_pids": worker_ids, "tracebacks_in_log": tracebacks,
        "redis": args.redis, "safe": args.safe, "users": args.users, "seed": seed,
    }
    failures = []
    if fivexx:
        failures.append(f"{fivexx} answers were 5xx")
    if transport:
        failures.append(f"{transport} requests got no answer ({dict(stats.transport_errors)})")
    if unexpected:
        failures.append(f"{unexpected} answers were not what the request calls for ({dict(stats.unexpected)})")
    if stats.retries_differing:
        failures.append(f"{stats.retries_differing} retried pushes got a different answer than the first delivery")
    if len(worker_ids) > 1:
        failures.append(f"the worker was replaced during the soak (pids {worker_ids})")
    if tracebacks:
        failures.append(f"{tracebacks} tracebacks in the server log {log_path}")
    if not samples:
        failures.append("no RSS sample was taken")
    elif not growth < args.max_growth_mb:
        failures.append(f"RSS grew by {growth:.1f} MB (limit {args.max_growth_mb:g} MB)")
    figures["failures"] = failures

    print()
    print(f"soak: {figures['date']} on {figures['machine']}")
    print(f"  duration            {duration:.0f} s, target {args.rate:g} req/s, "
          f"achieved {figures['rate_achieved']} req/s")
    print(f"  requests sent       {sent}")
    print(f"  by status           {figures['by_status']}")
    print(f"  by kind             {figures['by_kind']}")
    print(f"  5xx                 {fivexx}")
    print(f"  transport errors    {transport}")
    print(f"  unexpected answers  {unexpected} {figures['unexpected'] or ''}")
    for example in stats.unexpected_examples:
        print(f"      {example}")
    print(f"  retries compared    {stats.retries_compared}, differing {stats.retries_differing}")
    print(f"  latency             p50 {figures['latency_ms']['p50']} ms, p99 {figures['latency_ms']['p99']} ms, "
          f"max {figures['latency_ms']['max']} ms")
    print(f"  worker RSS          start {rss_start:.1f} MB (after {args.warmup:g} s warm-up), end {rss_end:.1f} MB, "
          f"max {rss_max:.1f} MB, growth {growth:+.1f} MB ({len(samples)} samples, worker pids {worker_ids})")
    print(f"  RSS trend           {slope:+.2f} MB/min after the warm-up (least-squares fit of the samples)")
    print(f"  server log          {log_path} ({tracebacks} tracebacks)")
    print(f"  result              {'PASS' if not failures else 'FAIL: ' + '; '.join(failures)}")
    if args.json:
        figures["rss_samples"] = [(round(t, 1), round(r / mb, 2)) for t, _, r in samples]
        Path(args.json).write_text(json.dumps(figures, ensure_ascii=False, indent=2), "utf-8")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
