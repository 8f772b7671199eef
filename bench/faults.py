"""Exactly once under faults: a worker killed mid-handler, Redis stalled, Redis restarted empty.

    python bench/faults.py [--seconds 60] [--rate 200] [--scenarios kill,stall-1,stall-2,restart-1,restart-2]
                           [--retries-at 5,10,15] [--pin] [--no-write]

Each scenario starts a redis-server of its own on a free loopback port (no persistence) and the bot of
bench/apps/faults_app.py under gunicorn (sync workers, as bench/throughput.py starts them) with
KF_REDIS_URL pointing at it. Pushes go out as WeChat sends them, open loop (bench/loadgen.py
``run_schedule``): ``--rate`` requests per second in all, each push's first delivery followed by retries of
the very same signed request at ``--retries-at`` seconds (WeChat retries after 5 s without an answer, three
times; here every push is retried, answered or not, the hardest case for duplicate detection). So at the
defaults 50 new pushes a second, 4 deliveries each. The faults:

  kill       2 workers; every 10 s a push asking for a human ("转人工", whose handler sleeps 2 s) is sent and
             the worker running its handler gets SIGKILL (gunicorn starts another)
  stall-N    N workers; Redis stopped (SIGSTOP) for 3 s at a third of the run, then SIGCONT
  restart-N  N workers; Redis killed (SIGKILL) at a third of the run and started empty on the same port 1 s later

Handler runs are counted from the bot's side (each run appends ``S``/``E`` lines to its worker's file).
Reported per scenario: requests sent, 5xx answers, requests with no HTTP answer, answers slower than WeChat's
5 s, handler runs, runs killed, duplicate runs (a push's handler completing more than once), and lost replies
(a delivery answered ``success`` or with another reply after an earlier delivery of the push got one).
Traffic stays on 127.0.0.1; the machine's own Redis is never touched. The table goes to the "Faults" section
of bench/RESULTS.md unless --no-write.
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import psutil
import xmltodict

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from apps.common import ACCOUNT, APPID, TOKEN, TRIGGER, URL  # noqa: E402
from loadgen import HOST, build_request, run_schedule  # noqa: E402
from throughput import Server, free_port, machine, revision, write_section  # noqa: E402

from kf_plugin.testing import PushSigner, message_xml  # noqa: E402

SECTION = "## Faults"
APP = "apps.faults_app:create_app()"
SLOW_SECONDS = 2.0
STALL_SECONDS = 3.0
RESTART_GAP = 1.0
KILL_EVERY = 10.0
SCENARIOS = {"kill": 2, "stall-1": 1, "stall-2": 2, "restart-1": 1, "restart-2": 2}


class RedisServer:
    """A redis-server of our own on a free loopback port, without persistence."""

    def __init__(self, log_dir: Path, cpus: Optional[set] = None):
        self.port = free_port()
        self.log_dir = log_dir
        self.cpus = cpus
        self.process: Optional[subprocess.Popen] = None

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.port}/0"

    def start(self) -> None:
        log = open(self.log_dir / f"redis-{self.port}.log", "ab")
        cpus = self.cpus
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", HOST, "--save", "", "--appendonly", "no",
             "--dir", str(self.log_dir)], stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True,
            preexec_fn=(lambda: os.sched_setaffinity(0, cpus)) if cpus else None)
        log.close()

    def wait_ready(self, limit: float = 10.0) -> None:
        import redis
        deadline = time.monotonic() + limit
        while True:
            try:
                redis.Redis(host=HOST, port=self.port, socket_timeout=1).ping()
                return
            except redis.RedisError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server on port {self.port} did not start") from None
                time.sleep(0.02)

    def signal(self, number: int) -> None:
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, number)

    def kill(self) -> None:
        """SIGKILL and reap: the data goes with it."""
        if self.process is not None:
            self.signal(signal.SIGCONT)
            self.signal(signal.SIGKILL)
            self.process.wait(timeout=10)
            self.process = None


# -- the pushes ---------------------------------------------------------------------------------------------

@dataclass
class Schedule:
    sends: List[Tuple[float, bytes]] = field(default_factory=list)
    push_of: List[int] = field(default_factory=list)  # MsgId of each send
    delivery: List[int] = field(default_factory=list)  # 0: first delivery, 1…: retries
    slow: List[Tuple[float, int]] = field(default_factory=list)  # (first delivery's offset, MsgId) to kill


def build_schedule(seconds: float, rate: float, retries_at: Sequence[float], port: int,
                   slow_every: float = 0.0) -> Schedule:
    signer = PushSigner(TOKEN, None, APPID)
    per_second = rate / (1 + len(retries_at))
    count = int(seconds * per_second)
    now = int(time.time())
    base = now * 1000
    schedule = Schedule()
    next_slow = slow_every / 2 if slow_every else float("inf")
    for number in range(count):
        offset = number / per_second
        slow = offset >= next_slow
        if slow:
            next_slow += slow_every
        msg_id = base + number
        xml = message_xml(text=f"你好，{TRIGGER}" if slow else "你好", sender=f"oFault{number:023d}",
                          account=ACCOUNT, create_time=now, msg_id=msg_id)
        query, body = signer.sign(xml, timestamp=str(now))
        request = build_request(port, f"{URL}?{urllib.parse.urlencode(query)}", body)
        if slow:
            schedule.slow.append((offset, msg_id))
        for delivery, delay in enumerate((0.0, *retries_at)):
            schedule.sends.append((offset + delay, request))
            schedule.push_of.append(msg_id)
            schedule.delivery.append(delivery)
    return schedule


# -- the faults ---------------------------------------------------------------------------------------------

def plan_redis_fault(kind: str, redis: RedisServer, at: float, notes: List[str]):
    """An ``on_start`` for run_schedule that stalls or restarts ``redis`` ``at`` seconds in."""
    def on_start(loop, t0: float) -> None:
        def note(what: str) -> None:
            notes.append(f"{loop.time() - t0:+.2f} s {what}")
        if kind == "stall":
            loop.call_at(t0 + at, lambda: (redis.signal(signal.SIGSTOP), note("SIGSTOP redis")))
            loop.call_at(t0 + at + STALL_SECONDS, lambda: (redis.signal(signal.SIGCONT), note("SIGCONT redis")))
        else:
            loop.call_at(t0 + at, lambda: (redis.kill(), note("SIGKILL redis")))
            loop.call_at(t0 + at + RESTART_GAP, lambda: (redis.start(), note("redis started empty")))
    return on_start


def plan_kills(slow: List[Tuple[float, int]], runs_dir: Path, server: Server, notes: List[str]):
    """An ``on_start`` that SIGKILLs the worker running each slow push's handler, once it has started."""
    def on_start(loop, t0: float) -> None:
        import asyncio

        async def kill_when_running(offset: float, msg_id: int) -> None:
            await asyncio.sleep(max(0.0, t0 + offset - loop.time()))
            for _ in range(300):  # up to 3 s for the handler to start
                pid = started_by(runs_dir, msg_id)
                if pid is not None:
                    workers = {p.pid for p in psutil.Process(server.process.pid).children()}
                    if pid in workers:
                        os.kill(pid, signal.SIGKILL)
                        notes.append(f"{loop.time() - t0:+.2f} s SIGKILL worker {pid} running push {msg_id}")
                    return
                await asyncio.sleep(0.01)
            notes.append(f"push {msg_id}: its handler did not start within 3 s; nothing killed")

        for offset, msg_id in slow:
            asyncio.ensure_future(kill_when_running(offset, msg_id))
    return on_start


def started_by(runs_dir: Path, msg_id: int) -> Optional[int]:
    needle = f"S {msg_id} "
    for path in runs_dir.glob("runs-*.log"):
        for line in path.read_text().splitlines():
            if line.startswith(needle):
                return int(line.split()[2])
    return None


# -- what happened ------------------------------------------------------------------------------------------

@dataclass
class Tally:
    sent: int = 0
    five_xx: int = 0
    no_answer: int = 0
    slower_than_5s: int = 0
    slowest: float = 0.0
    runs: int = 0
    killed_runs: int = 0
    duplicate_runs: int = 0
    duplicates_other_worker: int = 0
    lost: int = 0
    unanswered_pushes: int = 0
    duplicate_times: List[float] = field(default_factory=list)  # unix times of the duplicate runs' returns
    duplicate_starts: List[float] = field(default_factory=list)  # and of their starts
    first_lost: str = ""


def read_runs(runs_dir: Path) -> Dict[int, List[Tuple[str, int, float]]]:
    runs: Dict[int, List[Tuple[str, int, float]]] = defaultdict(list)
    for path in runs_dir.glob("runs-*.log"):
        for line in path.read_text().splitlines():
            kind, msg_id, pid, when = line.split()
            runs[int(msg_id)].append((kind, int(pid), float(when)))
    return runs


def reply_of(status: int, body: bytes) -> Optional[str]:
    """The reply's text content; "" for ``success`` or an empty answer; None for no 200 answer."""
    if status != 200:
        return None
    text = body.decode("utf-8", "replace").strip()
    if text in ("", "success"):
        return ""
    try:
        fields = xmltodict.parse(text)["xml"]
        return f"{fields.get('MsgType')}:{fields.get('Content')}"
    except Exception:
        return f"unparsable:{text[:80]}"


def tally(schedule: Schedule, outcomes, runs: Dict[int, List[Tuple[str, int, float]]], started_at: float) -> Tally:
    result = Tally(sent=len(outcomes))
    by_push: Dict[int, List[Tuple[int, Optional[str]]]] = defaultdict(list)
    for outcome in outcomes:
        if outcome.status >= 500:
            result.five_xx += 1
        if outcome.status == 0:
            result.no_answer += 1
        took = outcome.finished - outcome.started
        result.slowest = max(result.slowest, took)
        if took > 5.0:
            result.slower_than_5s += 1
        by_push[schedule.push_of[outcome.index]].append(
            (schedule.delivery[outcome.index], reply_of(outcome.status, outcome.body)))
    for msg_id, deliveries in by_push.items():
        deliveries.sort()
        first_reply = None
        for delivery, reply in deliveries:
            if first_reply is None:
                if reply:
                    first_reply = reply
            elif reply != first_reply:
                result.lost += 1
                result.first_lost = result.first_lost or f"push {msg_id} delivery {delivery}: {reply!r}"
        if first_reply is None:
            result.unanswered_pushes += 1
        starts = [(pid, when) for kind, pid, when in runs.get(msg_id, []) if kind == "S"]
        ends = [(pid, when) for kind, pid, when in runs.get(msg_id, []) if kind == "E"]
        result.runs += len(starts)
        result.killed_runs += len(starts) - len(ends)
        if len(ends) > 1:
            result.duplicate_runs += len(ends) - 1
            first_pid = min(ends, key=lambda e: e[1])[0]
            result.duplicates_other_worker += sum(1 for pid, _ in ends if pid != first_pid)
            for pid, when in sorted(ends, key=lambda e: e[1])[1:]:
                began = max((at for p, at in starts if p == pid and at <= when), default=when)
                result.duplicate_times.append(when - started_at)
                result.duplicate_starts.append(began - started_at)
    return result


# -- one scenario -------------------------------------------------------------------------------------------

def run_scenario(name: str, args: argparse.Namespace, scratch: Path) -> Tuple[Tally, List[str], float]:
    workers = SCENARIOS[name]
    kind = name.split("-")[0]
    log_dir = scratch / name
    runs_dir = log_dir / "runs"
    runs_dir.mkdir(parents=True)
    redis = RedisServer(log_dir, args.server_cpus)
    redis.start()
    redis.wait_ready()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KF_", "BENCH_"))}
    env.update(KF_REDIS_URL=redis.url, BENCH_RUNS_DIR=str(runs_dir), BENCH_SLOW_SECONDS=str(SLOW_SECONDS),
               PYTHONDONTWRITEBYTECODE="1")
    server = Server("faults", "plain", env, log_dir, args.server_cpus, workers, app=APP)
    notes: List[str] = []
    try:
        server.start(PushSigner(TOKEN, None, APPID))
        schedule = build_schedule(args.seconds, args.rate, args.retries_at, server.port,
                                  KILL_EVERY if kind == "kill" else 0.0)
        fault_at = args.seconds / 3
        on_start = (plan_kills(schedule.slow, runs_dir, server, notes) if kind == "kill"
                    else plan_redis_fault(kind, redis, fault_at, notes))
        started_at = time.time() + 0.05
        result = run_schedule(schedule.sends, server.port, timeout=30.0, on_start=on_start)
        time.sleep(0.5)  # let the last runs' lines land
        counted = tally(schedule, result.outcomes, read_runs(runs_dir), started_at)
        log_text = server.log_path.read_text(errors="replace")
        notes.append(f"kf_plugin logged 'Redis is unreachable' {log_text.count('Redis is unreachable')}×, "
                     f"'Redis is back' {log_text.count('Redis is back')}×, tracebacks {log_text.count('Traceback')}")
        return counted, notes, fault_at
    finally:
        server.stop()
        redis.kill()


def render(results: Dict[str, Tuple[Tally, List[str], float]]) -> str:
    lines = ["| fault | workers | requests sent | 5xx | no answer | answers > 5 s | slowest answer s | handler runs "
             "| runs killed | duplicate runs (on another worker) | of them after Redis was back: returned · begun "
             "| when (s after the fault) | lost replies | pushes never answered |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|"]
    for name, (t, _, fault_at) in results.items():
        kind = name.split("-")[0]
        when, late = "—", "—"
        if kind != "kill":
            back = fault_at + (STALL_SECONDS if kind == "stall" else RESTART_GAP)
            begun_after = [x - back for x in t.duplicate_starts if x > back]
            late = (f"{sum(1 for x in t.duplicate_times if x > back)} · {len(begun_after)}"
                    + (f" (began ≤ {max(begun_after):.2f} s after)" if begun_after else ""))
        if t.duplicate_times:
            since = fault_at if kind != "kill" else 0.0
            when = f"{min(t.duplicate_times) - since:+.1f} … {max(t.duplicate_times) - since:+.1f}"
        lines.append(f"| {kind} | {SCENARIOS[name]} | {t.sent:,} | {t.five_xx} | {t.no_answer} | {t.slower_than_5s} "
                     f"| {t.slowest:.2f} | {t.runs:,} | {t.killed_runs} | {t.duplicate_runs} "
                     f"({t.duplicates_other_worker}) | {late} | {when} | {t.lost} | {t.unanswered_pushes} |")
    lines.append("")
    for name, (t, notes, _) in results.items():
        lines.append(f"- {name}: " + "; ".join(notes) + (f"; first lost reply: {t.first_lost}" if t.first_lost else ""))
    return "\n".join(lines)


def parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=60.0, help="seconds of first deliveries (default 60)")
    parser.add_argument("--rate", type=float, default=200.0, help="requests per second, retries included")
    parser.add_argument("--retries-at", default="5,10,15", help="seconds after the first delivery (default 5,10,15)")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS), help=f"any of {', '.join(SCENARIOS)}")
    parser.add_argument("--pin", action="store_true", help="servers and Redis on the first CPU, the sender on the rest")
    parser.add_argument("--results", type=Path, default=BENCH / "RESULTS.md")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    args.scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    if not args.scenarios or any(s not in SCENARIOS for s in args.scenarios):
        parser.error(f"--scenarios takes a comma-separated list of {', '.join(SCENARIOS)}")
    try:
        args.retries_at = [float(x) for x in args.retries_at.split(",") if x.strip()]
    except ValueError:
        parser.error("--retries-at takes seconds separated by commas, e.g. 5,10,15")
    if not 1 <= args.seconds <= 600 or not 1 <= args.rate <= 2000:
        parser.error("--seconds must be 1–600 and --rate 1–2000")
    args.server_cpus = None
    if args.pin:
        cpus = sorted(os.sched_getaffinity(0))
        if len(cpus) < 2:
            parser.error("--pin needs at least 2 CPUs")
        args.server_cpus = {cpus[0]}
        os.sched_setaffinity(0, set(cpus[1:]))
    return args


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    command = "python bench/faults.py " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    results: Dict[str, Tuple[Tally, List[str], float]] = {}
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="kf-faults-") as scratch:
        for name in args.scenarios:
            print(f"{name}: {args.seconds:.0f} s at {args.rate:.0f} req/s …", flush=True)
            results[name] = run_scenario(name, args, Path(scratch))
            t = results[name][0]
            print(f"  sent {t.sent}, 5xx {t.five_xx}, no answer {t.no_answer}, duplicates {t.duplicate_runs}, "
                  f"lost {t.lost}", flush=True)
    when = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    text = "\n".join([
        SECTION, "",
        f"`{command}` — {when}, {(time.monotonic() - began) / 60:.1f} min.", "",
        f"Machine: {machine()}. Code: {revision()}.", "",
        f"The bot of bench/apps/faults_app.py (kf_plugin's init_app endpoint, no kf rules, a handler of the bot's "
        f"own answering `echo <MsgId>`; a \"{TRIGGER}\" push's handler sleeps {SLOW_SECONDS:g} s) under gunicorn, "
        f"sync workers, KF_REDIS_URL at a redis-server of the benchmark's own (free port, no persistence); no "
        f"KF_SECRET. Open-loop pushes at {args.rate:g} req/s for {args.seconds:g} s: each push's first delivery, "
        f"then the same signed request again at +{', +'.join(f'{r:g}' for r in args.retries_at)} s (every push "
        f"retried). kill: every {KILL_EVERY:g} s a \"{TRIGGER}\" push, whose worker gets SIGKILL once its handler "
        f"has started. stall: SIGSTOP of Redis at {args.seconds / 3:.1f} s, SIGCONT {STALL_SECONDS:g} s later. "
        f"restart: SIGKILL of Redis at {args.seconds / 3:.1f} s, started empty on the same port {RESTART_GAP:g} s "
        "later. Handler runs counted from the bot's side; a duplicate run is a push's handler returning more than "
        "once; a lost reply is a delivery answered `success` or otherwise after an earlier delivery of its push "
        "got a reply. \"when\": when the duplicate runs returned, from the fault's start; \"after Redis was back\": "
        "returned (began) after SIGCONT, or after the restart (kill: times from the run's start)."
        + (" Pinned: gunicorn and Redis on one CPU, the sender on the other." if args.pin else ""), "",
        render(results)])
    print()
    print(text)
    if not args.no_write:
        write_section(args.results, text, SECTION)
        print(f"written to {args.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
