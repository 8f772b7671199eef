"""Webhook throughput, side by side: kf_plugin against a bare wechatpy view and WeRoBot.

    python bench/throughput.py [--rounds N] [--requests N] [--mode plain|aes|both] [--systems a,b,c,d] [--pin]
                               [--workers N] [--api] [--push transfer|common] [--kf-plugin PATH]

Each system runs under gunicorn (1 sync worker, as the targets are set; ``--workers N`` for more) on a free
loopback port; a load generator in separate processes (bench/loadgen.py, 2 connections by default) sends it
signed text pushes, every one a distinct push (its own MsgId and, by default, its own sender), all signed —
and in safe mode encrypted — before the clock starts. The systems take turns round by round (a b c d, then
b c d a, …) and every system gets the same freshly signed set in a round, so drift of the machine cancels out.
Every answer is checked after the round: HTTP 200 and the expected reply to the right user (decrypted, and its
MsgSignature checked, in safe mode).

Two kinds of push (``--push``, passed to the servers as BENCH_PUSH):
  transfer (default)  a text asking for a human ("你好，请帮我转人工"), which a kf rule answers with a
                      transfer: the answer expected is a transfer_customer_service reply
  common              texts no kf rule takes ("今天天气怎么样", … in turn; checked against the rule file before
                      the run), which the bot's own handler answers: the answer expected is the text reply "收到"

  (a) kf_plugin's endpoint, a 50-rule YAML file (49 keyword/regex/event rules that do not match, then
      the one that takes the transfer push), duplicate detection and the 48-hour window on, memory state;
      with --push common also a bot router (KfPlugin(app, router=...)) whose one handler answers every text
  (b) the same with Redis state (KF_REDIS_URL, database 8, flushed before its server starts: a flush while
      it runs would be a Redis found empty, after which claims wait a second for workers' write-back)
  (c) a bare wechatpy Flask view: check_signature + parse_message + TransferCustomerServiceReply.render
      (TextReply.render for the common push; WeChatCrypto.decrypt_message / encrypt_message in safe mode)
  (d) WeRoBot 1.13 as it comes: a filter returning TransferCustomerServiceReply (and for the common push a
      text handler after it) through werobot.contrib.flask.make_view, with WeRoBot's default session
      storage (SQLite: a read, and a committed write per handler tried)
  (e) the same WeRoBot app with sessions turned off (SESSION_STORAGE=False), which this job does not need
  for reference, only when asked for with --systems:
  (f) the floor: a Flask view under the same gunicorn that checks and parses nothing
  (g) (c) plus one Redis SET NX per push (redis-py, keyed by MsgId): the least a hand-written view does to
      answer WeChat's retries once across workers, so (g)/(c) is what one Redis round trip per push costs
  (m) (a) with the metrics on (KF_METRICS) in prometheus_client's multiprocess mode, as several gunicorn
      workers run them (PROMETHEUS_MULTIPROC_DIR: a fresh directory of the run's): (m)/(a) is their cost

With --pin, the servers and the Redis of (b) and (g) run on the first CPU this process may use and the load
clients on the others (Redis's CPUs are restored afterwards): the scheduler no longer moves them about, and a
worker's Redis round trip stays on one CPU — on a virtual machine a wake-up across CPUs costs tens of µs (an
inter-processor interrupt through the hypervisor), on one CPU a few.

kf_plugin runs with KF_TOKEN and KF_APPID and no KF_SECRET: no WeChat API calls, no deadline thread pool.
With --api, (a) and (b) run as users deploy them: KF_SECRET set and KF_API_BASE_URL at a
kf_plugin.testing.Sandbox served on loopback by this process, so the token service (its scheduler job) and the
handler thread pool under the reply deadline exist; the benchmark's rule is a plain transfer, which makes no
API call per push (the common push's bot handler runs on that pool, and makes none either).

--kf-plugin PATH: (a) and (b) import kf_plugin from the checkout at PATH (put first on their servers' import
path, and checked by the app) instead of this tree; everything else (the benchmark, systems (c)–(g)) stays
on this tree. The "Code:" line names PATH's commit, so two commits of kf_plugin compare through runs of the
same benchmark (one kf_plugin per run), each against the same (c)–(g).

Targets: (a)/(c) ≥ 0.95, (b)/(c) ≥ 0.75, (a)/(d) ≥ 3. The table goes to stdout and, unless --no-write, to
the "Webhook throughput" section of bench/RESULTS.md: ", common push" added to its title with --push common,
" with API credentials" with --api, " (kf_plugin at <commit>)" with --kf-plugin, so no run overwrites
another kind's.
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import shlex
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Set, Tuple

import psutil
import xmltodict

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))

from apps.common import (  # noqa: E402
    ACCOUNT, AES_KEY, APPID, COMMON_TEXTS, PUSH_KINDS, REPLY_TEXT, TOKEN, TRANSFER_TEXT, TRIGGER, URL,
)
from loadgen import HOST, LoadResult, build_request, run_load  # noqa: E402

from kf_plugin import load_rules  # noqa: E402
from kf_plugin.testing import PushSigner, Sandbox, message_xml  # noqa: E402
from kf_plugin.webhook import parse_push  # noqa: E402

SYSTEMS = {
    "a": ("kf_plugin, memory state", "apps.kf_app:create_app()"),
    "b": ("kf_plugin, Redis state", "apps.kf_app:create_app()"),
    "c": ("bare wechatpy view", "apps.wechatpy_app:create_app()"),
    "d": ("WeRoBot 1.13 as it comes (SQLite sessions)", "apps.werobot_app:create_app()"),
    "e": ("WeRoBot 1.13, sessions off", "apps.werobot_app:create_app()"),
    # For reference only, not in the default set:
    "f": ("floor: gunicorn + Flask, no checks", "apps.floor_app:create_app()"),
    "g": ("bare wechatpy view + one Redis SET NX per push", "apps.wechatpy_app:create_app()"),
    "m": ("kf_plugin, memory state, metrics on", "apps.kf_app:create_app()"),
}
DEFAULT_SYSTEMS = "a,b,c,d,e"
TARGETS = (("a", "c", 0.95), ("b", "c", 0.75), ("a", "d", 3.0), ("m", "a", 0.95))
# Printed beside the targets, with what each compares.
REFERENCE_RATIOS = (
    ("a", "e", "WeRoBot without its session store"),
    ("b", "e", "WeRoBot without its session store"),
    ("g", "c", "what one Redis round trip per push costs a bare view"),
    ("b", "g", "both claim every push in Redis"),
)
REDIS_SYSTEMS = ("b", "g")
# The texts of each kind of push, sent in turn.
PUSH_TEXTS = {"transfer": (TRANSFER_TEXT,), "common": COMMON_TEXTS}
TRANSFER_RULE = "ask-for-human"
SECTION = "## Webhook throughput"
API_SECRET = "benchSecret0000000000000000000000"
RULE_COUNT = 50


# -- the rule file ------------------------------------------------------------------------------------------

def write_rules(path: Path, count: int = RULE_COUNT) -> None:
    """``count - 1`` keyword, regex and event rules that the benchmark push does not match, then the one it does."""
    lines = ["version: 1", 'fallback_text: "客服暂时不在线，请留言"', "rules:"]
    for i in range(count - 1):
        kind = i % 5
        lines.append(f"  - name: no-match-{i}")
        if kind == 0:
            lines.append(f'    keywords: ["产品{i}", "型号{i}", "PRODUCT-{i}"]')
        elif kind == 1:
            lines.append(f'    keywords: ["价格{i}"]')
            lines.append("    match: exact")
        elif kind == 2:
            lines.append(f'    regex: "订单\\\\s*{i}[0-9]+号$|退款{i}"')
        elif kind == 3:
            lines.append("    event: CLICK")
            lines.append(f'    event_key: "MENU_{i}"')
            lines.append(f'    kf_account: "agent{i}@{ACCOUNT}"')
        else:
            lines.append("    event: subscribe")
            lines.append(f'    event_key_regex: "^campaign-{i}-"')
    lines.append(f"  - name: {TRANSFER_RULE}")
    lines.append(f'    keywords: ["{TRIGGER}"]')
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def check_rule_file(path: Path, push: str) -> None:
    """Make sure the rules at ``path`` take each text of ``push`` as meant: the transfer push by the last rule
    only, a common push by none (rules matched as kf_plugin matches them, on pushes parsed as it parses them).

    :raises RuntimeError: a text some other rule, or no rule, takes.
    """
    router = load_rules(str(path)).to_router()
    wanted = [TRANSFER_RULE] if push == "transfer" else []
    for text in PUSH_TEXTS[push]:
        message = parse_push(message_xml(text=text, sender="oBenchRuleCheck", account=ACCOUNT, msg_id=1))
        taken = [handler.name for handler in router.candidates(message)]
        if taken != wanted:
            raise RuntimeError(f"the rule file {path} takes the {push} push {text!r} with "
                               f"{', '.join(taken) or 'no rule'}; it must be taken by {wanted or 'no rule'}")


# -- the pushes ---------------------------------------------------------------------------------------------

@dataclass
class PushSet:
    """Pushes signed for one round, who sent each (to check that each answer goes back to its sender), and
    their kind (``push``: which answer to expect)."""

    targets: List[str]
    bodies: List[bytes]
    senders: List[str]
    push: str = "transfer"

    def requests_for(self, port: int) -> List[bytes]:
        return [build_request(port, t, b) for t, b in zip(self.targets, self.bodies)]


class PushFactory:
    """Distinct pushes: every MsgId unique across the whole run; senders unique unless ``users`` limits them.

    ``push``: the kind of push, ``transfer`` or ``common`` (whose texts take turns).
    """

    def __init__(self, signer: PushSigner, users: int = 0, push: str = "transfer"):
        self.signer = signer
        self.users = users
        self.push = push
        self.texts = PUSH_TEXTS[push]
        self.next_id = int(time.time()) * 1000

    def make(self, count: int) -> PushSet:
        now = int(time.time())
        targets, bodies, senders = [], [], []
        for _ in range(count):
            msg_id = self.next_id
            self.next_id += 1
            user = msg_id % self.users if self.users else msg_id
            sender = f"oBench{user:022d}"  # 28 characters, like a real openid
            text = self.texts[msg_id % len(self.texts)]
            xml = message_xml(text=text, sender=sender, account=ACCOUNT, create_time=now, msg_id=msg_id)
            query, body = self.signer.sign(xml, timestamp=str(now))
            targets.append(f"{URL}?{urllib.parse.urlencode(query)}")
            bodies.append(body)
            senders.append(sender)
        return PushSet(targets, bodies, senders, self.push)


@dataclass
class Check:
    non_200: int = 0
    wrong_reply: int = 0
    errors: int = 0
    first_problem: str = ""

    @property
    def ok(self) -> bool:
        return not (self.non_200 or self.wrong_reply or self.errors)


def check_answers(result: LoadResult, pushes: PushSet, signer: PushSigner, expected: int) -> Check:
    """Every answer must be a 200 with the reply ``pushes.push`` expects, to the push's sender (see reply_problem)."""
    check = Check()
    missing = expected - len(result.outcomes)
    if missing:
        check.errors += missing
        check.first_problem = f"{missing} requests not sent before the round's time limit"
    for outcome in result.outcomes:
        problem = ""
        if outcome.status == 0:
            check.errors += 1
            problem = outcome.error
        elif outcome.status != 200:
            check.non_200 += 1
            problem = f"HTTP {outcome.status}: {outcome.body[:200]!r}"
        else:
            problem = answer_problem(outcome.body, pushes.senders[outcome.index], pushes.push, signer)
            if problem:
                check.wrong_reply += 1
        if problem and not check.first_problem:
            check.first_problem = problem
    return check


def answer_problem(body: bytes, sender: str, push: str, signer: PushSigner) -> str:
    """What is wrong with the body of a 200 answer ("" if nothing), opened as WeChat would (decrypted, and its
    MsgSignature checked, in safe mode)."""
    try:
        text = body.decode("utf-8")
        if signer.cipher is not None and "<Encrypt>" not in text:
            return "safe mode, but the reply is not encrypted"
        return reply_problem(xmltodict.parse(signer.open_reply(text))["xml"], sender, push)
    except Exception as exc:  # a body that does not open or parse is as wrong as a wrong reply
        return f"{type(exc).__name__}: {exc}; body {body[:200]!r}"


def reply_problem(fields: Dict[str, str], sender: str, push: str) -> str:
    """What is wrong with a reply's fields ("" if nothing): it must go to ``sender`` from the account, and be a
    transfer (``push`` transfer) or the text reply REPLY_TEXT (``push`` common)."""
    if fields.get("ToUserName") != sender or fields.get("FromUserName") != ACCOUNT:
        return f"not addressed to the sender: {fields}"
    if push == "common":
        if fields.get("MsgType") != "text" or fields.get("Content") != REPLY_TEXT:
            return f"not the text reply {REPLY_TEXT!r}: {fields}"
    elif fields.get("MsgType") != "transfer_customer_service":
        return f"not a transfer: {fields}"
    return ""


# -- the servers --------------------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def redis_reachable(url: str) -> Optional[str]:
    """``None`` when Redis answers PING at ``url``, else why not."""
    try:
        import redis
        redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2).ping()
        return None
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"


def flush_redis(url: str) -> None:
    import redis
    redis.Redis.from_url(url, socket_timeout=5).flushdb()


class Server:
    """One system under gunicorn with ``workers`` sync workers on a free loopback port; stopped by :meth:`stop`."""

    def __init__(self, system: str, mode: str, env: Dict[str, str], log_dir: Path,
                 cpus: Optional[Set[int]] = None, workers: int = 1, app: Optional[str] = None,
                 wrapper: Sequence[str] = (), ready_limit: float = 30.0):
        """``wrapper``: a command gunicorn runs under (valgrind, say); ``ready_limit``: seconds a start may take."""
        self.system, self.mode = system, mode
        self.wrapper, self.ready_limit = list(wrapper), ready_limit
        self.cpus = cpus
        self.worker_count = workers
        self.app = app or SYSTEMS[system][1]
        self.env = env
        self.log_path = log_dir / f"gunicorn-{system}-{mode}.log"
        self.process: Optional[subprocess.Popen] = None
        self.port = 0
        self.workers: List[psutil.Process] = []

    def command(self) -> List[str]:
        # A checkout named by BENCH_KF_PLUGIN must shadow this tree's kf_plugin. PYTHONPATH cannot do it: gunicorn
        # puts the current directory and --chdir ahead of it, and skips a --pythonpath entry already on sys.path.
        # --pythonpath entries go ahead of everything. apps.kf_app checks where kf_plugin came from.
        paths = [self.env["BENCH_KF_PLUGIN"]] if self.env.get("BENCH_KF_PLUGIN") else []
        return [*self.wrapper, sys.executable, "-m", "gunicorn", "--workers", str(self.worker_count),
                "--worker-class", "sync", "--bind", f"{HOST}:{self.port}",
                "--pythonpath", ",".join(paths + [str(BENCH)]),
                "--chdir", str(ROOT), "--log-level", "warning", "--timeout", "60", self.app]

    def start(self, signer: PushSigner, attempts: int = 3) -> None:
        for attempt in range(attempts):
            self.port = free_port()
            log = open(self.log_path, "ab")
            cpus = self.cpus
            self.process = subprocess.Popen(self.command(), env=self.env, stdout=log, stderr=log,
                                            stdin=subprocess.DEVNULL, start_new_session=True,
                                            preexec_fn=(lambda: os.sched_setaffinity(0, cpus)) if cpus else None)
            log.close()
            if self._wait_ready(signer, self.ready_limit):
                self.workers = self._all_workers(self.ready_limit)
                return
            self.stop()
        raise RuntimeError(f"gunicorn for ({self.system}, {self.mode}) did not start; see {self.log_path}:\n"
                           + self.log_path.read_text(errors="replace")[-2000:])

    def _all_workers(self, limit: float = 30.0) -> List[psutil.Process]:
        """The workers, once gunicorn has started all of them (one answered the readiness check)."""
        deadline = time.monotonic() + limit
        while True:
            children = psutil.Process(self.process.pid).children()
            if len(children) == self.worker_count:
                return children
            if time.monotonic() > deadline:
                raise RuntimeError(f"gunicorn for ({self.system}) has {len(children)} workers, "
                                   f"not {self.worker_count}")
            time.sleep(0.1)

    def _wait_ready(self, signer: PushSigner, limit: float = 30.0) -> bool:
        """Ready when a signed GET (WeChat's URL check) gets the echostr back."""
        deadline = time.monotonic() + limit
        query = urllib.parse.urlencode(signer.verification("ready-1234"))
        request = build_request(self.port, f"{URL}?{query}", b"", method="GET")
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False
            try:
                with socket.create_connection((HOST, self.port), timeout=2) as sock:
                    sock.sendall(request)
                    answer = b""
                    while True:
                        chunk = sock.recv(65536)
                        if not chunk:
                            break
                        answer += chunk
                if answer.startswith(b"HTTP/1.1 200") and answer.endswith(b"ready-1234"):
                    return True
            except OSError:
                pass
            time.sleep(0.1)
        return False

    def cpu_seconds(self) -> float:
        """User and system time of all the workers so far."""
        return sum(times.user + times.system for times in (worker.cpu_times() for worker in self.workers))

    def stop(self) -> None:
        """SIGTERM to the gunicorn master we started; SIGKILL to its process group if it lingers."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        try:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
        except ProcessLookupError:
            pass


# -- measuring ----------------------------------------------------------------------------------------------

@dataclass
class Round:
    rate: float
    latencies: List[float]  # seconds
    cpu_per_request: float  # seconds of the workers' CPU per request
    connections: int
    foreign_cores: float  # CPU the rest of the machine used meanwhile (other people's processes), in cores
    redis_other_commands: int = 0  # (b): commands Redis ran for other clients meanwhile
    redis_time_per_push: float = 0.0  # (b): seconds of the redis-server's CPU (for anyone), per push


def busy_cpu_seconds() -> float:
    """CPU time processes have used since boot, all cores (user, nice, system; not interrupts, not steal)."""
    times = psutil.cpu_times()
    return times.user + times.nice + times.system


def redis_servers() -> List[psutil.Process]:
    return [p for p in psutil.process_iter(["name"]) if p.info["name"] == "redis-server"]


def redis_process(url: str) -> psutil.Process:
    import redis
    return psutil.Process(int(redis.Redis.from_url(url, socket_timeout=5).info("server")["process_id"]))


def pin(process: psutil.Process, cpus: Set[int]) -> List[int]:
    """Move ``process`` onto ``cpus``; the CPUs it had."""
    before = process.cpu_affinity()
    process.cpu_affinity(sorted(cpus))
    return before


def cpu_of(processes: Iterable[psutil.Process]) -> float:
    total = 0.0
    for process in processes:
        try:
            times = process.cpu_times()
            total += times.user + times.system
        except psutil.Error:
            pass
    return total


@dataclass
class Series:
    system: str
    mode: str
    rounds: List[Round] = field(default_factory=list)
    check: Check = field(default_factory=Check)

    @property
    def rate(self) -> float:
        return statistics.median(r.rate for r in self.rounds)

    def percentile(self, p: float) -> float:
        values = sorted(x for r in self.rounds for x in r.latencies)
        return values[min(len(values) - 1, max(0, round(p / 100 * len(values)) - 1))]

    @property
    def cpu_per_request(self) -> float:
        return statistics.median(r.cpu_per_request for r in self.rounds)

    @property
    def busy(self) -> float:
        """How much of the time the workers were on the CPU (median over rounds, in CPUs): near 100% per
        worker = saturated."""
        return statistics.median(r.cpu_per_request * r.rate for r in self.rounds)


def merge(into: Check, other: Check) -> None:
    into.non_200 += other.non_200
    into.wrong_reply += other.wrong_reply
    into.errors += other.errors
    if other.first_problem and not into.first_problem:
        into.first_problem = other.first_problem


# Commands Redis counts for one push of (b) with this tree's kf_plugin, by push and mode (a script counts with
# the commands it runs). Both: the claim script (EVALSHA; the plain push's query binding; the found-empty
# marker; the sender's conversation; the push; the sender's window). A transfer: the hand-off it opens too (the
# conversation, its expiry, the record and two indexes), with its reply stored by the claim. A common push:
# Redis's clock (TIME) for the push's lease, then the reply's SET. Counted on Redis's
# total_commands_processed over 200 pushes in process; another checkout (--kf-plugin) may differ.
REDIS_COMMANDS_PER_PUSH = {"transfer": {"plain": 11, "aes": 10}, "common": {"plain": 8, "aes": 7}}


def redis_commands(url: Optional[str]) -> int:
    """Commands the Redis at ``url`` has processed since it started (a script's own commands included)."""
    if url is None:
        return 0
    import redis
    return int(redis.Redis.from_url(url, socket_timeout=5).info("stats")["total_commands_processed"])


def one_round(server: Server, pushes: PushSet, signer: PushSigner, concurrency: int,
              time_limit: float, redis_url: Optional[str] = None) -> Tuple[Round, Check]:
    """``redis_url``: the system uses that Redis; count what else it ran meanwhile."""
    requests = pushes.requests_for(server.port)
    redis = redis_servers()
    commands = redis_commands(redis_url)
    before = (time.perf_counter(), busy_cpu_seconds(), server.cpu_seconds(), cpu_of(redis), time.process_time())
    result = run_load(requests, server.port, concurrency=concurrency, time_limit=time_limit)
    after = (time.perf_counter(), busy_cpu_seconds(), server.cpu_seconds(), cpu_of(redis), time.process_time())
    commands_after = redis_commands(redis_url)
    # Our own INFO calls (one before, one after) count too.
    ours = REDIS_COMMANDS_PER_PUSH[pushes.push][server.mode] * len(result.outcomes)
    others = max(0, commands_after - commands - 2 - ours)
    wall, busy, worker, redis_cpu, own = (b - a for a, b in zip(before, after))
    # Whatever the machine did besides the worker, the clients, Redis and this process: other people's work.
    foreign = max(0.0, busy - worker - result.client_cpu - redis_cpu - own) / wall
    check = check_answers(result, pushes, signer, len(requests))
    latencies = [o.finished - o.started for o in result.outcomes]
    sent = max(1, len(result.outcomes))
    return Round(result.rate, latencies, worker / sent, result.connections, foreign, others,
                 (redis_cpu if redis_url else 0.0) / sent), check


def server_env(system: str, mode: str, args: argparse.Namespace, rules: Path) -> Dict[str, str]:
    """The environment of ``system``'s server: this one's without KF_* and BENCH_*, then what the system reads."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KF_", "BENCH_"))}
    env.update(BENCH_MODE=mode, BENCH_PUSH=args.push, PYTHONDONTWRITEBYTECODE="1")
    if system in ("a", "b", "m"):
        env.update(KF_RULES=str(rules))
        if args.api_url:
            env.update(KF_SECRET=API_SECRET, KF_API_BASE_URL=args.api_url)
        if args.kf_plugin:  # Server.command puts it on the import path (not PYTHONPATH: see there)
            env.update(BENCH_KF_PLUGIN=str(args.kf_plugin))
    if system == "b":
        env.update(KF_REDIS_URL=args.redis_url)
    if system == "e":
        env.update(BENCH_WEROBOT_SESSION="off")
    if system == "m":
        metrics = rules.parent / f"metrics-{mode}"   # the run's scratch directory, one per server
        metrics.mkdir(exist_ok=True)
        env.update(BENCH_METRICS="1", PROMETHEUS_MULTIPROC_DIR=str(metrics))
    if system == "g":
        env.update(BENCH_REDIS_URL=args.redis_url)
    return env


def start_servers(mode: str, systems: Sequence[str], args: argparse.Namespace, rules: Path, log_dir: Path,
                  signer: PushSigner, servers: List[Server]) -> Dict[str, Server]:
    """A server for each system, each ready; appended to ``servers`` as it starts (for the caller to stop)."""
    started: Dict[str, Server] = {}
    for system in systems:
        if system in REDIS_SYSTEMS:
            flush_redis(args.redis_url)
        server = Server(system, mode, server_env(system, mode, args, rules), log_dir, args.server_cpus,
                        args.workers)
        servers.append(server)
        server.start(signer)
        started[system] = server
    print(f"[{mode}] servers up: " + ", ".join(f"({s}) :{srv.port} worker {' '.join(str(w.pid) for w in srv.workers)}"
                                              for s, srv in started.items()), flush=True)
    return started


def measure_mode(mode: str, systems: Sequence[str], args: argparse.Namespace, rules: Path,
                 log_dir: Path, servers: List[Server]) -> Dict[str, Series]:
    signer = PushSigner(TOKEN, AES_KEY if mode == "aes" else None, APPID)
    factory = PushFactory(signer, args.users, args.push)
    started = start_servers(mode, systems, args, rules, log_dir, signer, servers)
    series = {s: Series(s, mode) for s in systems}
    for system, server in started.items():  # warm-up: imports, lazy set-up, caches, first Redis connections
        pushes = factory.make(args.warmup)
        _, check = one_round(server, pushes, signer, args.concurrency, args.time_limit)
        merge(series[system].check, check)
    for number in range(1, args.rounds + 1):
        pushes = factory.make(args.requests)
        line = []
        # Each round starts one system further on (a b c d, b c d a, …): no system is always first.
        offset = (number - 1) % len(systems)
        for system in systems[offset:] + systems[:offset]:
            measured, check = one_round(started[system], pushes, signer, args.concurrency, args.time_limit,
                                        args.redis_url if system == "b" else None)
            series[system].rounds.append(measured)
            merge(series[system].check, check)
            line.append(f"({system}) {measured.rate:5.0f}/s" + (f" [others {measured.foreign_cores:.1f} cores]"
                                                                 if measured.foreign_cores >= 0.2 else ""))
        print(f"[{mode}] round {number}/{args.rounds}: " + "  ".join(line), flush=True)
    for system in systems:
        started[system].stop()
    return series


# -- reporting ----------------------------------------------------------------------------------------------

def paired_ratios(top: Series, bottom: Series) -> List[float]:
    return [a.rate / b.rate for a, b in zip(top.rounds, bottom.rounds)]


Verdict = Tuple[str, str, str, float, float, bool]


def render_tables(results: Dict[str, Dict[str, Series]],
                  push: str = "transfer") -> Tuple[str, List[Verdict]]:
    """A table per mode, what else ran meanwhile, and the ratios: the text and the targets' verdicts."""
    lines: List[str] = []
    verdicts: List[Verdict] = []
    for mode, series in results.items():
        lines.append(f"**{'plain pushes' if mode == 'plain' else 'safe mode (AES)'}**")
        lines.append("")
        lines.extend(system_table(series))
        lines.append("")
        lines.extend(background_notes(series, push, mode))
        lines.append("")
        lines.extend(ratio_lines(mode, series, verdicts))
        lines.append("")
    return "\n".join(lines), verdicts


def system_table(series: Dict[str, Series]) -> List[str]:
    lines = [("| system | req/s (median) | min–max | p50 ms | p99 ms | worker CPU µs/req | worker busy | "
              "vs (c) | checked answers | non-200 |"),
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    bare = series.get("c")
    for system, s in series.items():
        rates = [r.rate for r in s.rounds]
        versus = f"{s.rate / bare.rate:.2f}" if bare is not None else "—"
        checked = sum(len(r.latencies) for r in s.rounds)
        bad = "" if s.check.ok else f" ({s.check.wrong_reply} wrong, {s.check.errors} failed)"
        lines.append(f"| ({system}) {SYSTEMS[system][0]} | {s.rate:,.0f} | {min(rates):,.0f}–{max(rates):,.0f} "
                     f"| {s.percentile(50) * 1e3:.2f} | {s.percentile(99) * 1e3:.2f} "
                     f"| {s.cpu_per_request * 1e6:,.0f} | {s.busy * 100:.0f}% | {versus} | {checked:,}{bad} "
                     f"| {s.check.non_200} |")
    return lines


def background_notes(series: Dict[str, Series], push: str, mode: str) -> List[str]:
    """What the rest of the machine, and Redis for other clients, did during the measured rounds."""
    foreign = [r.foreign_cores for s in series.values() for r in s.rounds]
    lines = [(f"Other processes on the machine (not the worker, the clients or Redis) used a median "
              f"{statistics.median(foreign):.2f} cores (max {max(foreign):.2f}) during the measured rounds.")]
    if "b" in series:
        others = [r.redis_other_commands for r in series["b"].rounds]
        busy = [r.redis_time_per_push * 1e6 for r in series["b"].rounds]
        lines.append(f"During the rounds of (b) Redis also ran {sum(others):,} commands for other clients "
                     f"(per round: {', '.join(f'{n:,}' for n in others)}; all it ran less "
                     f"{REDIS_COMMANDS_PER_PUSH[push][mode]} per push of (b), this tree's kf_plugin's count); "
                     f"the redis-server's CPU time, per push of (b): "
                     f"{', '.join(f'{b:.0f}' for b in busy)} µs.")
    return lines


def ratio_lines(mode: str, series: Dict[str, Series], verdicts: List[Verdict]) -> List[str]:
    """The targets' ratios (each verdict appended to ``verdicts``), then the reference ratios."""
    lines = []
    for top, bottom, target in TARGETS:
        if top in series and bottom in series:
            ratio = series[top].rate / series[bottom].rate
            met = ratio >= target
            verdicts.append((mode, top, bottom, ratio, target, met))
            lines.append(f"- ({top})/({bottom}) = **{ratio:.2f}** (target ≥ {target:g}: "
                         f"{'met' if met else 'MISSED'}); {ratio_spread(series[top], series[bottom])}")
    for top, bottom, note in REFERENCE_RATIOS:
        if top in series and bottom in series:
            lines.append(f"- ({top})/({bottom}) = {series[top].rate / series[bottom].rate:.2f} (no target; "
                         f"{note}); {ratio_spread(series[top], series[bottom])}")
    return lines


def ratio_spread(top: Series, bottom: Series) -> str:
    pairs = paired_ratios(top, bottom)
    return (f"round by round {min(pairs):.2f}–{max(pairs):.2f}, median {statistics.median(pairs):.2f}; "
            f"by worker CPU per request {bottom.cpu_per_request / top.cpu_per_request:.2f}")


def machine() -> str:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    from importlib.metadata import version
    packages = ", ".join(f"{name} {version(name)}" for name in ("gunicorn", "Flask", "Werkzeug", "wechatpy",
                                                                 "WeRoBot", "redis", "hiredis"))
    return (f"{os.cpu_count()} cores (nproc {len(os.sched_getaffinity(0))}), {model}, "
            f"{psutil.virtual_memory().total / 2**30:.0f} GiB; Python {platform.python_version()}; {packages}; "
            f"{platform.platform()}")


ANALYSIS = "### Analysis"


def write_section(path: Path, text: str, section: str = SECTION) -> None:
    """Replace (or append) ``section`` of RESULTS.md, leaving everyone else's sections as they are.

    A hand-written ``### Analysis`` subsection at the end of the section is kept.
    """
    if path.exists():
        current = path.read_text(encoding="utf-8")
    else:
        current = ("# Benchmark results\n\nEach section is written by the benchmark it names; "
                   "rerun that benchmark to refresh it.\n")
    start = current.find(section + "\n")
    if start < 0:
        updated = current.rstrip("\n") + "\n\n" + text.rstrip("\n") + "\n"
    else:
        end = current.find("\n## ", start + len(section))
        rest = current[end + 1:] if end >= 0 else ""
        ours = current[start:end + 1] if end >= 0 else current[start:]
        analysis = ours.find("\n" + ANALYSIS)
        if analysis >= 0:
            text = text.rstrip("\n") + "\n" + ours[analysis:]
        updated = current[:start] + text.rstrip("\n") + "\n" + ("\n" + rest if rest else "")
    path.write_text(updated, encoding="utf-8")


def git(root: Path, *args: str) -> str:
    """The output of a read-only git command in ``root`` ("" if git fails)."""
    try:
        return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def revision(root: Path = ROOT) -> str:
    """The commit of the checkout at ``root``, and whether its kf_plugin/ differed from it."""
    commit = git(root, "rev-parse", "--short", "HEAD") or "unknown"
    dirty = git(root, "status", "--porcelain", "--", "kf_plugin")
    return f"commit {commit}" + (" with uncommitted changes in kf_plugin/" if dirty else "")


def code_line(args: argparse.Namespace) -> str:
    if not args.kf_plugin:
        return revision()
    return (f"{revision()} for the benchmark and (c)–(g); (a)/(b) with kf_plugin from {args.kf_plugin}, "
            f"{revision(args.kf_plugin)}")


def section_title(args: argparse.Namespace) -> str:
    """The section of RESULTS.md a run writes: one for each kind of push, --api and --kf-plugin commit."""
    title = SECTION
    if args.push == "common":
        title += ", common push" + ("," if args.api else "")
    if args.api:
        title += " with API credentials"
    if args.kf_plugin:
        title += f" (kf_plugin at {git(args.kf_plugin, 'rev-parse', '--short', 'HEAD') or 'unknown commit'})"
    return title


def push_description(push: str) -> str:
    if push == "transfer":
        return (f"a text \"{TRANSFER_TEXT}\"; every answer checked: HTTP 200 and a transfer_customer_service "
                "reply to the sender")
    texts = ", ".join(f"\"{text}\"" for text in COMMON_TEXTS)
    return (f"the texts {texts} in turn, none of which a rule of the rule file takes (checked before the run); "
            f"every answer checked: HTTP 200 and a text reply \"{REPLY_TEXT}\" to the sender")


def method_paragraph(args: argparse.Namespace, systems: Sequence[str], pinned_redis: bool) -> str:
    """How the load was made, what was checked, what the columns mean."""
    return (
        f"Each system under gunicorn, {args.workers} sync worker{'s' if args.workers > 1 else ''}, on 127.0.0.1; "
        f"load from {args.concurrency} client "
        f"processes (bench/loadgen.py, one connection each: gunicorn's sync worker closes it after every "
        f"answer, so every request opens a new one); {args.rounds} rounds of {args.requests:,} requests per "
        f"system, taking turns ({' '.join(systems)}, then {' '.join(list(systems[1:]) + list(systems[:1]))}, … "
        f"each round starting one system further on) on the same freshly signed set each round, after "
        f"{args.warmup} warm-up requests each. Every push distinct (own MsgId, "
        + ("own sender" if not args.users else f"{args.users} senders in turn")
        + f"), {push_description(args.push)}, decrypted with its MsgSignature checked in safe mode. "
        "req/s: median over rounds "
        "(min–max beside it); p50/p99: client-side latency (connect to last byte) over all rounds; "
        "worker CPU: the gunicorn workers' user+system time per request (median over rounds); worker busy: "
        "that CPU time × req/s, how saturated the workers were (100 % = one CPU). Ratios: of the median req/s; beside "
        "them the range and median of the same ratio round by round, and the inverse ratio of worker CPU per "
        "request (less disturbed by other load on the machine, but blind to time spent waiting on Redis)."
        + (f" Pinned (--pin): the servers{' and Redis' if pinned_redis else ''} on CPU {min(args.server_cpus)}, "
           f"the load clients "
           f"on CPU {', '.join(map(str, sorted(args.client_cpus)))}." if args.pin else
           " Not pinned: the scheduler places the worker, the clients and Redis."))


def kf_description(args: argparse.Namespace) -> str:
    """What (a)/(b) are in this run."""
    common = args.push == "common"
    return (
        "(a)/(b): kf_plugin's own endpoint, 50-rule YAML file (49 non-matching keyword/regex/event rules, "
        "then `keywords: [\"转人工\"]`"
        + ("; none of them takes the push) and the bot's own router, registered as users do "
           f"(KfPlugin(app, router=router)), whose one handler answers every text \"{REPLY_TEXT}\"; "
           if common else "), ")
        + "duplicate detection (KF_DEDUPE_TTL 60) and 48-hour-window tracking on; KF_TOKEN and KF_APPID set, "
        + ("KF_SECRET set and KF_API_BASE_URL at a kf_plugin.testing.Sandbox on loopback (served by the benchmark's "
           "process), so the token service and the handler thread pool under the reply deadline run as deployed "
           + ("(the bot's handler runs on that pool and makes no API call); " if common else
              "(the transfer rule makes no API call per push); ") if args.api else
           "**no KF_SECRET** (no WeChat API calls, no deadline thread pool); ")
        + "(b) with KF_REDIS_URL=" + args.redis_url + " (flushed before its server starts); (m) as (a) with "
        "the metrics on (KF_METRICS, served at /metrics, scraped by nobody) in prometheus_client's multiprocess "
        "mode (PROMETHEUS_MULTIPROC_DIR), as several workers run them."
        + (f" kf_plugin imported from {args.kf_plugin} (see Code above), not this tree." if args.kf_plugin else ""))


def peers_description(args: argparse.Namespace, systems: Sequence[str]) -> str:
    """What (c)–(g) are in this run."""
    common = args.push == "common"
    reply = "TextReply.render" if common else "TransferCustomerServiceReply.render"
    return (
        f"(c): bare wechatpy view (check_signature, parse_message, {reply}; WeChatCrypto in safe mode). "
        + ("(d): WeRoBot, the transfer filter (which does not match) then a text handler returning "
           f"\"{REPLY_TEXT}\", through werobot.contrib.flask.make_view, as WeRoBot comes: its default session "
           "storage (SQLite: a read, and a committed write after each handler tried, two per push). "
           if common else
           "(d): WeRoBot filter through werobot.contrib.flask.make_view, as WeRoBot comes: its default session "
           "storage (SQLite, a read and a committed write per push). ")
        + "(e): the same with sessions off (SESSION_STORAGE=False)."
        + (f" (f), for reference: the floor — a Flask view under the same gunicorn that returns "
           f"{'the text reply' if common else 'a transfer reply'} without checking or parsing anything "
           "(encrypting it in safe mode)." if "f" in systems else "")
        + (" (g), for reference: (c) plus the one Redis round trip a hand-written view needs to answer "
           "WeChat's retries once across workers (SET NX of the MsgId through redis-py, same Redis and database "
           "as (b)); its ratio to (c) is what that round trip costs on this machine." if "g" in systems else ""))


def report(args: argparse.Namespace, command: str, systems: Sequence[str], results: Dict[str, Dict[str, Series]],
           pinned_redis: bool, duration: float) -> str:
    tables, _ = render_tables(results, args.push)
    problems = [f"({s.system}, {s.mode}): {s.check.first_problem}" for series in results.values()
                for s in series.values() if s.check.first_problem]
    skipped = [s for s in args.systems if s not in systems]
    when = dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    return "\n".join(
        [section_title(args), "", f"`{command}` — {when}, {duration / 60:.1f} min.", "",
         f"Machine: {machine()}. Code: {code_line(args)}.", "",
         method_paragraph(args, systems, pinned_redis), "",
         kf_description(args) + " " + peers_description(args, systems), "",
         tables]
        + ([f"Skipped: {', '.join(f'({s})' for s in skipped)} — Redis not reachable at {args.redis_url}.", ""]
           if skipped else [])
        + (["**Answer problems:** " + "; ".join(problems), ""] if problems else []))


# -- main ---------------------------------------------------------------------------------------------------

def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5, help="measured rounds per system (default 5)")
    parser.add_argument("--requests", type=int, default=2000, help="requests per round (default 2000)")
    parser.add_argument("--mode", choices=("plain", "aes", "both"), default="both")
    parser.add_argument("--push", choices=PUSH_KINDS, default="transfer",
                        help="transfer (default): a text a kf rule answers with a transfer; common: texts no kf "
                             "rule takes, answered by the bot's own handler with a text reply")
    parser.add_argument("--systems", default=DEFAULT_SYSTEMS,
                        help="comma-separated, any of a,b,c,d,e (default) and, for reference, f (the floor: "
                             "gunicorn + Flask with no checks) and g ((c) plus one Redis SET NX per push)")
    parser.add_argument("--concurrency", type=int, default=2, help="client connections (default 2)")
    parser.add_argument("--workers", type=int, default=1,
                        help="gunicorn sync workers per system (default 1, as the targets are set; more shows "
                             "how the wait on Redis is used when another worker can run meanwhile)")
    parser.add_argument("--warmup", type=int, default=300, help="warm-up requests per server (default 300)")
    parser.add_argument("--users", type=int, default=0,
                        help="distinct senders to cycle through (default 0: a new sender for every push)")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/8",
                        help="Redis for (b) and (g); its database is flushed before their servers start")
    parser.add_argument("--time-limit", type=float, default=120.0, help="seconds a round may take at most")
    parser.add_argument("--pin", action="store_true",
                        help="servers and Redis on the first CPU, load clients on the others (see above)")
    parser.add_argument("--api", action="store_true",
                        help="(a) and (b) with KF_SECRET and KF_API_BASE_URL at a sandbox on loopback (see above)")
    parser.add_argument("--kf-plugin", type=Path, metavar="PATH",
                        help="run (a) and (b) on kf_plugin from the checkout at PATH (a directory holding "
                             "kf_plugin/) instead of this tree")
    parser.add_argument("--results", type=Path, default=BENCH / "RESULTS.md")
    parser.add_argument("--no-write", action="store_true", help="print the table only; leave RESULTS.md alone")
    args = parser.parse_args(argv)
    check_args(parser, args)
    return args


def check_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Validate and normalise the parsed arguments; :raises SystemExit: (parser.error) on a bad one."""
    args.api_url = ""
    systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    unknown = [s for s in systems if s not in SYSTEMS]
    if unknown or not systems:
        parser.error(f"--systems takes a comma-separated list of {', '.join(SYSTEMS)} (got {args.systems!r})")
    if args.rounds < 1 or args.requests < 1 or args.concurrency < 1 or args.workers < 1 or args.warmup < 0:
        parser.error("--rounds, --requests, --concurrency and --workers must be at least 1, --warmup at least 0")
    parsed = urllib.parse.urlparse(args.redis_url)
    if parsed.hostname not in ("127.0.0.1", "localhost", "::1"):
        parser.error("--redis-url must point at this machine's loopback address")
    if args.kf_plugin is not None:
        args.kf_plugin = args.kf_plugin.resolve()
        if not (args.kf_plugin / "kf_plugin" / "__init__.py").is_file():
            parser.error(f"--kf-plugin {args.kf_plugin}: no kf_plugin/__init__.py there (give the checkout's root)")
    args.systems = list(dict.fromkeys(systems))
    args.server_cpus = args.client_cpus = None
    if args.pin:
        cpus = sorted(os.sched_getaffinity(0))
        if len(cpus) < 2:
            parser.error("--pin needs at least 2 CPUs")
        args.server_cpus, args.client_cpus = {cpus[0]}, set(cpus[1:])


def reachable_systems(args: argparse.Namespace) -> List[str]:
    """The systems asked for, less those needing Redis when it does not answer (saying so)."""
    systems = list(args.systems)
    needing_redis = [s for s in systems if s in REDIS_SYSTEMS]
    if needing_redis:
        why = redis_reachable(args.redis_url)
        if why is not None:
            print(f"skipping {', '.join(f'({s})' for s in needing_redis)}: Redis is not reachable at "
                  f"{args.redis_url} ({why})", flush=True)
            systems = [s for s in systems if s not in REDIS_SYSTEMS]
    return systems


def pin_for_run(args: argparse.Namespace, systems: Sequence[str],
                unpin: List[Tuple[psutil.Process, List[int]]]) -> bool:
    """With --pin, this process (the load clients fork from it) and Redis onto their CPUs, each process's
    former CPUs appended to ``unpin``; whether Redis was pinned."""
    if not args.pin:
        return False
    unpin.append((psutil.Process(), pin(psutil.Process(), args.client_cpus)))
    if not any(s in REDIS_SYSTEMS for s in systems):
        return False
    try:
        redis_server = redis_process(args.redis_url)
        unpin.append((redis_server, pin(redis_server, args.server_cpus)))
        return True
    except psutil.Error as exc:  # e.g. Redis in a container: its pid is not ours to see
        print(f"Redis left unpinned: {exc}", flush=True)
        return False


def run(args: argparse.Namespace, systems: Sequence[str]) -> Tuple[Dict[str, Dict[str, Series]], bool]:
    """Measure every mode: the series by mode and system, and whether Redis was pinned.

    :raises KeyboardInterrupt: on SIGINT or SIGTERM, after stopping every server this run started.
    :raises RuntimeError: a server that does not start, or a rule file that takes the pushes otherwise than meant.
    """
    modes = ["plain", "aes"] if args.mode == "both" else [args.mode]
    servers: List[Server] = []
    unpin: List[Tuple[psutil.Process, List[int]]] = []
    api = None

    def terminate(signum, frame):  # SIGTERM (and SIGINT, even where it was ignored): stop through the finally below
        raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, terminate) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        if args.api:
            api = Sandbox(appid=APPID, secret=API_SECRET).serve()
            args.api_url = api.url
        pinned_redis = pin_for_run(args, systems, unpin)
        with tempfile.TemporaryDirectory(prefix="kf-bench-") as scratch:
            rules = Path(scratch) / "rules.yaml"
            write_rules(rules)
            check_rule_file(rules, args.push)
            print(f"{len(systems)} systems × {args.rounds} rounds × {args.requests} requests, "
                  f"{args.concurrency} connections, {args.push} push, modes: {', '.join(modes)}; logs in {scratch}",
                  flush=True)
            return {mode: measure_mode(mode, systems, args, rules, Path(scratch), servers) for mode in modes}, \
                pinned_redis
    finally:
        clean_up(servers, api, unpin, previous)


def clean_up(servers: Sequence[Server], api: Optional[Sandbox], unpin: Sequence[Tuple[psutil.Process, List[int]]],
             handlers: Dict[int, object]) -> None:
    """Stop the servers and the sandbox, give processes back their CPUs and restore the signal handlers."""
    for server in servers:
        server.stop()
    if api is not None:
        api.stop()
    for process, cpus in unpin:
        try:
            process.cpu_affinity(cpus)
        except psutil.Error:  # gone meanwhile
            pass
    for sig, handler in handlers.items():
        signal.signal(sig, handler)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    command = "python bench/throughput.py " + " ".join(shlex.quote(a) for a in (argv if argv is not None
                                                                                 else sys.argv[1:]))
    systems = reachable_systems(args)
    if not systems:
        print("nothing to measure", file=sys.stderr)
        return 2
    started_at = time.monotonic()
    try:
        results, pinned_redis = run(args, systems)
    except KeyboardInterrupt:
        print("\ninterrupted: stopping the servers", file=sys.stderr)
        return 130
    text = report(args, command, systems, results, pinned_redis, time.monotonic() - started_at)
    print()
    print(text)
    if not args.no_write:
        write_section(args.results, text, section_title(args))
        print(f"written to {args.results}")
    if not all(s.check.ok for series in results.values() for s in series.values()):
        print("some answers were wrong or failed: see above", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
