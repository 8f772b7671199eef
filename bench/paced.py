"""CPU per push at a paced rate (open loop), kf_plugin with memory state against Redis state.

    python bench/paced.py [--rates 5,300] [--seconds 60] [--systems a,b] [--api] [--pin] [--repeat N] [--no-write]

At saturation (bench/throughput.py) a worker never waits idle, so the work it does between pushes (threads
that wake up on a timer, the scheduler) and what a push costs when it arrives alone (cold caches, a wake-up)
stay hidden. Here the systems of bench/throughput.py ((a) memory state, (b) Redis state at
``--redis-url``, database flushed first) get distinct signed pushes at fixed rates, open loop
(bench/loadgen.py ``run_schedule``: each request leaves at its time, on a connection of its own), after 300
warm-up pushes; the workers' user+system CPU over the run is divided by the pushes answered, so background
work is charged to the pushes. Every answer is checked as in bench/throughput.py. ``--api``: KF_SECRET and
KF_API_BASE_URL at a kf_plugin.testing.Sandbox on loopback, as users deploy it (token service, handler
thread pool; then ``--seconds`` must be a whole number of hand-off sweeps, so every window holds as many).
``--repeat N``: N turns per system, taken in alternation, each on a fresh server; the turn of median worker
CPU is reported with the range (one turn's figure moves by a third from run to run on a small VM). Target:
(b) ≤ 1.3 × (a) per push at each rate. The table goes to the "CPU per push, paced"
section of bench/RESULTS.md unless --no-write.
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import shlex
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import psutil

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from apps.common import AES_KEY, APPID, TOKEN  # noqa: E402
from loadgen import run_schedule  # noqa: E402
from throughput import (  # noqa: E402
    API_SECRET,
    SYSTEMS,
    PushFactory,
    Server,
    check_answers,
    cpu_of,
    flush_redis,
    machine,
    one_round,
    pin,
    redis_process,
    redis_reachable,
    revision,
    write_rules,
    write_section,
)

from kf_plugin.config import SETTINGS  # noqa: E402
from kf_plugin.testing import PushSigner, Sandbox  # noqa: E402

SECTION = "## CPU per push, paced"
TARGET = 1.3
#: The hand-off sweep's interval in the bench's apps (KF_HANDOFF_SWEEP's default).
SWEEP_EVERY = SETTINGS["KF_HANDOFF_SWEEP"].default


def paced_run(server: Server, factory: PushFactory, signer: PushSigner, rate: float, seconds: float,
              redis: Optional[psutil.Process]) -> Dict[str, Any]:
    pushes = factory.make(int(rate * seconds))
    requests = pushes.requests_for(server.port)
    schedule = [(i / rate, request) for i, request in enumerate(requests)]
    worker, redis_cpu, wall = server.cpu_seconds(), cpu_of([redis] if redis else []), time.perf_counter()
    result = run_schedule(schedule, server.port, timeout=10.0)
    worker, redis_cpu = server.cpu_seconds() - worker, cpu_of([redis] if redis else []) - redis_cpu
    wall = time.perf_counter() - wall
    check = check_answers(result, pushes, signer, len(requests))
    latencies = sorted(o.finished - o.started for o in result.outcomes)
    sent = max(1, len(result.outcomes))
    return {"sent": len(result.outcomes), "rate": len(result.outcomes) / wall, "worker_us": worker / sent * 1e6,
            "redis_us": redis_cpu / sent * 1e6, "p50": latencies[len(latencies) // 2] * 1e3,
            "p99": latencies[int(len(latencies) * 0.99)] * 1e3,
            "bad": check.non_200 + check.wrong_reply + check.errors, "problem": check.first_problem}


def parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rates", default="5,300", help="requests per second, comma-separated (default 5,300)")
    parser.add_argument("--seconds", type=float, default=60.0, help="seconds per rate and system (default 60)")
    parser.add_argument("--systems", default="a,b", help="a and/or b (default a,b)")
    parser.add_argument("--mode", choices=("plain", "aes"), default="plain")
    parser.add_argument("--api", action="store_true", help="KF_SECRET and KF_API_BASE_URL at a sandbox")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/8")
    parser.add_argument("--pin", action="store_true", help="servers and Redis on the first CPU, the sender on the rest")
    parser.add_argument("--results", type=Path, default=BENCH / "RESULTS.md")
    parser.add_argument("--repeat", type=int, default=1,
                        help="turns per system, taken in alternation; the median run is reported (default 1)")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    try:
        args.rates = [float(r) for r in args.rates.split(",") if r.strip()]
    except ValueError:
        parser.error("--rates takes numbers separated by commas, e.g. 5,300")
    args.systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    if not args.systems or any(s not in ("a", "b") for s in args.systems):
        parser.error("--systems takes a, b or a,b")
    if not args.rates or any(not 0 < r <= 2000 for r in args.rates) or not 1 <= args.seconds <= 600:
        parser.error("--rates must be in (0, 2000] and --seconds in [1, 600]")
    if not 1 <= args.repeat <= 20:
        parser.error("--repeat must be from 1 to 20")
    if args.api and args.seconds % SWEEP_EVERY:
        # The hand-off sweep runs every KF_HANDOFF_SWEEP seconds whatever the rate: a window of a whole number of
        # intervals holds as many sweeps for every system, any other may hold one more for one of them.
        parser.error(f"with --api, --seconds must be a whole number of hand-off sweeps ({SWEEP_EVERY:g} s each)")
    return args


def measure(system: str, args: argparse.Namespace, api: Optional[Any], rules: Path, scratch: Path,
            server_cpus: Optional[set], signer: PushSigner, factory: PushFactory, redis: Optional[psutil.Process],
            runs: Dict[Tuple[str, float], List[Dict[str, Any]]]) -> None:
    """One turn of ``system``: a fresh server, warmed up, then every rate; each run appended to ``runs``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KF_", "BENCH_"))}
    env.update(BENCH_MODE=args.mode, PYTHONDONTWRITEBYTECODE="1", KF_RULES=str(rules))
    if api is not None:
        env.update(KF_SECRET=API_SECRET, KF_API_BASE_URL=api.url)
    if system == "b":
        env.update(KF_REDIS_URL=args.redis_url)
        flush_redis(args.redis_url)
    server = Server(system, args.mode, env, scratch, server_cpus)
    server.start(signer)
    try:
        one_round(server, factory.make(300), signer, 2, 60.0)  # warm-up
        for rate in args.rates:
            r = paced_run(server, factory, signer, rate, args.seconds, redis if system == "b" else None)
            runs.setdefault((system, rate), []).append(r)
            print(f"({system}) {rate:g}/s: worker {r['worker_us']:.0f} µs/push, Redis "
                  f"{r['redis_us']:.0f} µs/push, {r['bad']} bad answers"
                  + (f" (the first: {r['problem']})" if r["bad"] else ""), flush=True)
            if r["bad"]:   # what the server said about it, before its scratch directory goes
                print("".join(server.log_path.read_text(errors="replace").splitlines(keepends=True)[-20:]))
    finally:
        server.stop()


def median_run(measured: List[Dict[str, Any]]) -> Dict[str, Any]:
    """The run of median worker CPU per push, with the range over every run and the wrong answers of all."""
    ordered = sorted(measured, key=lambda r: r["worker_us"])
    chosen = dict(ordered[(len(ordered) - 1) // 2])
    chosen.update(low=ordered[0]["worker_us"], high=ordered[-1]["worker_us"], runs=len(measured),
                  bad=sum(r["bad"] for r in measured),
                  problem=next((r["problem"] for r in measured if r["bad"]), ""))
    return chosen


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    command = "python bench/paced.py " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    if "b" in args.systems and redis_reachable(args.redis_url) is not None:
        print(f"Redis is not reachable at {args.redis_url}", file=sys.stderr)
        return 2
    server_cpus = None
    unpin: List[Tuple[psutil.Process, List[int]]] = []
    redis = redis_process(args.redis_url) if "b" in args.systems else None
    if args.pin:
        cpus = sorted(os.sched_getaffinity(0))
        server_cpus = {cpus[0]}
        unpin.append((psutil.Process(), pin(psutil.Process(), set(cpus[1:]))))
        if redis is not None:
            unpin.append((redis, pin(redis, server_cpus)))
    api = Sandbox(appid=APPID, secret=API_SECRET).serve() if args.api else None
    signer = PushSigner(TOKEN, AES_KEY if args.mode == "aes" else None, APPID)
    factory = PushFactory(signer)
    runs: Dict[Tuple[str, float], List[Dict[str, Any]]] = {}
    began = time.monotonic()
    try:
        with tempfile.TemporaryDirectory(prefix="kf-paced-") as scratch:
            rules = Path(scratch) / "rules.yaml"
            write_rules(rules)
            for turn in range(args.repeat):   # the systems take turns, each turn starting one further on
                for system in args.systems[turn % len(args.systems):] + args.systems[:turn % len(args.systems)]:
                    measure(system, args, api, rules, Path(scratch), server_cpus, signer, factory, redis, runs)
    finally:
        if api is not None:
            api.stop()
        for process, cpus in unpin:
            try:
                process.cpu_affinity(cpus)
            except psutil.Error:
                pass
    results = {key: median_run(measured) for key, measured in runs.items()}
    text = render(args, command, results, time.monotonic() - began)
    print()
    print(text)
    if not args.no_write:
        write_section(args.results, text, SECTION)
        print(f"written to {args.results}")
    return 0 if all(r["bad"] == 0 for r in results.values()) else 1


def render(args: argparse.Namespace, command: str, results: Dict[Tuple[str, float], Dict[str, Any]],
           duration: float) -> str:
    when = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [SECTION, "", f"`{command}` — {when}, {duration / 60:.1f} min.", "",
             f"Machine: {machine()}. Code: {revision()}.", "",
             f"One gunicorn sync worker per system on 127.0.0.1, the rule file and pushes of bench/throughput.py "
             f"({args.mode}), sent open loop at each rate for {args.seconds:g} s after 300 warm-up pushes; "
             + ("KF_SECRET and KF_API_BASE_URL at a sandbox on loopback (token service and handler thread pool as "
                "deployed). " if args.api else "no KF_SECRET. ")
             + f"(b): KF_REDIS_URL={args.redis_url}. worker CPU: the worker's user+system time over the run per "
             "push answered (background threads included); Redis CPU: the redis-server's, per push (its other "
             "clients included, none expected)."
             + (" Pinned: the worker and Redis on one CPU, the sender on the other." if args.pin else "")
             + (f" {args.repeat} turns per system, a fresh server each, the systems taking turns (a b, then b a, "
                "…); each row is the turn of median worker CPU, the range over all turns beside it, wrong answers "
                "summed over all." if args.repeat > 1 else ""), "",
             ("| system | rate asked | req/s sent | pushes | worker CPU µs/push | range | Redis CPU µs/push | p50 ms "
              "| p99 ms | wrong answers |"), "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for (system, rate), r in sorted(results.items()):
        lines.append(f"| ({system}) {SYSTEMS[system][0]} | {rate:g} | {r['rate']:.1f} | {r['sent']:,} "
                     f"| {r['worker_us']:.0f} | {r['low']:.0f}–{r['high']:.0f} | {r['redis_us']:.0f} "
                     f"| {r['p50']:.2f} | {r['p99']:.2f} | {r['bad']} |")
    lines.append("")
    for (system, rate), r in sorted(results.items()):
        if r["bad"]:
            lines.append(f"- ({system}) at {rate:g} req/s: the first wrong answer: {r['problem']}")
    for rate in args.rates:
        a, b = results.get(("a", rate)), results.get(("b", rate))
        if a and b:
            ratio = b["worker_us"] / a["worker_us"]
            whole = (b["worker_us"] + b["redis_us"]) / a["worker_us"]
            lines.append(f"- {rate:g} req/s: (b)/(a) worker CPU per push = **{ratio:.2f}** (target ≤ {TARGET:g}: "
                         f"{'met' if ratio <= TARGET else 'MISSED'}); with Redis's own CPU {whole:.2f}")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
