"""Instructions per push of each system under gunicorn, counted by valgrind's callgrind: a figure that the load
of other virtual machines on the same host does not move, where req/s and CPU time do by ±30 % from round to
round on a shared 2-core VM.

    python bench/instructions.py [--systems a,b,c,g] [--pushes 500] [--warmup 200] [--api] [--push transfer]
                                 [--kf-plugin PATH] [--redis-url URL]

Each system of bench/throughput.py runs as there (one gunicorn sync worker, the same apps, rule file, pushes
and environment; ``--api``: KF_SECRET and KF_API_BASE_URL at a sandbox served by this process), but under
``valgrind --tool=callgrind --trace-children=yes``. After ``--warmup`` pushes the worker's counters are zeroed
(``callgrind_control --zero``); ``--pushes`` more are sent one at a time, a connection each, every answer
checked as the throughput benchmark checks it; then the counters are dumped and summed over the worker's
threads (its background jobs included; the sandbox runs in this process, not the worker). Redis's own work
for (b) and (g) is not in these counts: bench/redis_client.py measures it per call.

Instructions are not time — a cache miss costs no instruction, a system call's kernel side is not counted — so
the ratios here complement bench/throughput.py's rather than replace them.
"""
from __future__ import annotations

import argparse
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import List, Optional

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import throughput as T  # noqa: E402
from loadgen import HOST, build_request  # noqa: E402

from kf_plugin.testing import PushSigner  # noqa: E402

VALGRIND = ["valgrind", "--tool=callgrind", "--trace-children=yes"]


def served(system: str, args: argparse.Namespace, rules: Path, scratch: Path) -> T.Server:
    """``system`` under gunicorn under callgrind, ready (a slow start: everything runs ~50 times slower)."""
    if system in T.REDIS_SYSTEMS:
        T.flush_redis(args.redis_url)
    server = T.Server(system, "plain", T.server_env(system, "plain", args, rules), scratch,
                      wrapper=[*VALGRIND, f"--callgrind-out-file={scratch}/callgrind.%p"], ready_limit=600)
    server.start(PushSigner(T.TOKEN, None, T.APPID))
    return server


def send(server: T.Server, pushes: T.PushSet, signer: PushSigner) -> None:
    """Each push on a connection of its own, answered and checked before the next.

    :raises AssertionError: an answer is not the one the push expects.
    """
    for target, body, sender in zip(pushes.targets, pushes.bodies, pushes.senders):
        with socket.create_connection((HOST, server.port), timeout=120) as sock:
            sock.sendall(build_request(server.port, target, body).replace(b"keep-alive", b"close"))
            with sock.makefile("rb") as stream:
                answer = stream.read()   # to the end: the worker closes the connection after its answer
        head, _, payload = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200"), f"({server.system}) answered {head[:60]!r}"
        problem = T.answer_problem(payload, sender, pushes.push, signer)
        assert not problem, f"({server.system}) answered a push wrongly: {problem}"


def callgrind_control(option: str, pid: int) -> None:
    subprocess.run(["callgrind_control", option, str(pid)], check=True, capture_output=True, timeout=300)


def worker_instructions(scratch: Path, pid: int) -> int:
    """The instructions of the worker's last dump, summed over its threads."""
    dumps = sorted(scratch.glob(f"callgrind.{pid}.*"), key=lambda path: path.stat().st_mtime)
    assert dumps, f"no dump of worker {pid} in {scratch}"
    found = re.search(r"^(?:summary|totals): (\d+)", dumps[-1].read_text(errors="replace"), re.M)
    assert found, f"{dumps[-1]} holds no total"
    return int(found.group(1))


def measure(system: str, args: argparse.Namespace, rules: Path) -> float:
    """Instructions per push of ``system``'s worker."""
    with tempfile.TemporaryDirectory(prefix=f"kf-instructions-{system}-") as directory:
        scratch = Path(directory)
        server = served(system, args, rules, scratch)
        try:
            signer = PushSigner(T.TOKEN, None, T.APPID)
            factory = T.PushFactory(signer, push=args.push)
            send(server, factory.make(args.warmup), signer)
            pushes = factory.make(args.pushes)
            pid = server.workers[0].pid
            callgrind_control("--zero", pid)
            send(server, pushes, signer)
            for stale in scratch.glob(f"callgrind.{pid}.*"):
                stale.unlink()
            callgrind_control("--dump", pid)
            return worker_instructions(scratch, pid) / args.pushes
        finally:
            server.stop()


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--systems", default="a,b,c,g")
    parser.add_argument("--pushes", type=int, default=500)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--push", choices=("transfer", "common"), default="transfer")
    parser.add_argument("--api", action="store_true", help="(a), (b), (m) with API credentials at a sandbox")
    parser.add_argument("--kf-plugin", type=Path, default=None, help="kf_plugin from the checkout at PATH")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/8")
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    args.api_url = ""
    systems = args.systems.split(",")
    api = T.Sandbox(appid=T.APPID, secret=T.API_SECRET).serve() if args.api else None
    if api is not None:
        args.api_url = api.url
    started = time.time()
    try:
        with tempfile.TemporaryDirectory(prefix="kf-instructions-") as directory:
            rules = Path(directory) / "rules.yaml"
            T.write_rules(rules)
            results = {system: measure(system, args, rules) for system in systems}
    finally:
        if api is not None:
            api.stop()
    code = f"kf_plugin from {args.kf_plugin}" if args.kf_plugin else T.revision()
    valgrind = subprocess.run(["valgrind", "--version"], capture_output=True, text=True).stdout.strip()
    command = " ".join(["python bench/instructions.py", *(argv if argv is not None else sys.argv[1:])])
    print(f"\n{command} — {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(started))}; {code}; "
          f"{args.pushes} pushes after {args.warmup}; {valgrind}\n")
    base = results.get("c")
    print("| system | instructions per push (worker) | (c)'s over this |\n|---|---:|---:|")
    for system, count in results.items():
        ratio = f"{base / count:.2f}" if base else "–"
        print(f"| ({system}) {T.SYSTEMS[system][0]} | {count:,.0f} | {ratio} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
