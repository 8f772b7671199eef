"""A burst of 微信客服 messages through the bot: WeCom's callbacks, the pull, the rules, the replies.

    python bench/wecom_burst.py [--customers 1000] [--each 10] [--replies 5] [--workers 1,3] [--latency 0.02]
                                [--redis-url redis://127.0.0.1:6379/12] [--timeout 600] [--no-write]

The sandbox (kf_plugin.testing.sandbox, served by this process on loopback) plays WeCom, every API call
answered after ``--latency`` seconds (``sandbox.wecom.latency``). The bot is bench/apps/wecom_app.py under
gunicorn (sync workers, as bench/throughput.py starts them), serving 微信客服 alone with its state in Redis
(``--redis-url``, flushed before each run: only that database). Before the clock starts one message is
pulled and answered, so the account has a stored cursor, as a running bot's has. Then ``--customers``
customers write ``--each`` texts each, taking turns (customer 0's first, customer 1's first, …), as fast as
the sandbox takes them; each one is a ``kf_msg_or_event`` callback to the bot. A customer's last
``--replies`` texts are questions the bot answers (WeCom lets 5 messages follow a customer's last one); the
others it only records.

Checked from the bot's side (each handler run appends a line to its worker's file) and from the sandbox's
record of sends: every text handled exactly once, each customer's in the order written, every question's
answer sent once and each customer's answers in order. Reported: messages/s (the burst's texts over the time
from the first entering the sandbox to the last handled or answered), and the latency from a text entering
the sandbox (``customer_says``, which makes its callback) to its answer's ``send_msg`` reaching the sandbox
(before the sandbox's latency), p50/p99/max; and to its handler starting, for every text. The machine's load
average is noted, as the numbers depend on it. The table goes to the "微信客服 burst" section of
bench/RESULTS.md unless --no-write.
"""
from __future__ import annotations

import argparse
import collections
import datetime as dt
import os
import shlex
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import redis
from tqdm import tqdm

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from apps.common import AES_KEY  # noqa: E402
from apps.wecom_app import QUESTION, answer_of  # noqa: E402
from throughput import HOST, Server, flush_redis, machine, revision, write_section  # noqa: E402

from kf_plugin.state.redis_tokens import RedisTokenStore  # noqa: E402
from kf_plugin.testing.sandbox import Sandbox  # noqa: E402
from kf_plugin.testing.sandbox.pushes import BotUnreachableError  # noqa: E402
from kf_plugin.wecom import token_store_name  # noqa: E402
from kf_plugin.wecom.puller import LEASE_PREFIX  # noqa: E402

SECTION = "## 微信客服 burst"
APP = "apps.wecom_app:create_app()"
CALLBACK = "/wecom/kf"
WECOM_TOKEN = "benchWecomToken"
SEND = "/cgi-bin/kf/send_msg"


class WeComServer(Server):
    """The bot under gunicorn; ready once it answers WeCom's URL check (the sandbox's ``verify_bot``)."""

    def __init__(self, sandbox: Sandbox, env: Dict[str, str], log_dir: Path, workers: int):
        super().__init__("wecom", "aes", env, log_dir, None, workers, app=APP)
        self.sandbox = sandbox

    def _wait_ready(self, signer: object, limit: float = 30.0) -> bool:
        self.sandbox.wecom.connect_bot(f"http://{HOST}:{self.port}{CALLBACK}", WECOM_TOKEN, AES_KEY, timeout=10)
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            if self.process is None or self.process.poll() is not None:
                return False
            try:
                if self.sandbox.wecom.verify_bot():
                    return True
            except BotUnreachableError:
                pass
            time.sleep(0.1)
        return False


@dataclass
class Outcome:
    workers: int
    load_before: float
    written_in: float = 0.0
    drained_in: float = 0.0
    handled: int = 0
    twice: int = 0
    lost: int = 0
    out_of_order: int = 0
    replies: int = 0
    replies_missing: int = 0
    replies_twice: int = 0
    replies_out_of_order: int = 0
    send_errors: int = 0
    syncs: int = 0
    callbacks_then: int = 0
    cpu: float = 0.0
    reply_latency: List[float] = field(default_factory=list)
    start_latency: List[float] = field(default_factory=list)


def text_of(customer: int, index: int, question: bool) -> str:
    return f"wmBurst{customer:05d} #{index}" + (QUESTION if question else "")


def read_runs(runs_dir: Path) -> List[Tuple[float, str]]:
    """(unix time, text) of every handler run, from every worker's file."""
    runs = []
    for path in runs_dir.glob("runs-*.log"):
        for line in path.read_text(encoding="utf-8").splitlines():
            _, when, text = line.split(" ", 2)
            runs.append((float(when), text))
    return runs


def wait_until(predicate, limit: float, what: str) -> None:
    deadline = time.monotonic() + limit
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not happen within {limit:.0f} s")
        time.sleep(0.05)


def warm_up(sandbox: Sandbox, kfid: str, runs_dir: Path) -> None:
    """One question pulled and answered: the account's cursor is stored, the token fetched."""
    sandbox.wecom.customer_says(kfid, "wmWarmUp", "warm-up" + QUESTION)
    wait_until(lambda: len(sandbox.wecom.sent) == 1 and read_runs(runs_dir), 30, "the warm-up answer")
    sandbox.wecom.wait_for_callbacks(30)
    sandbox.clear_calls()


def burst(sandbox: Sandbox, kfid: str, args: argparse.Namespace) -> Dict[str, float]:
    """Every customer's texts, the customers taking turns; when each entered the sandbox."""
    entered: Dict[str, float] = {}
    for index in range(args.each):
        question = index >= args.each - args.replies
        for customer in range(args.customers):
            text = text_of(customer, index, question)
            entered[text] = time.time()
            sandbox.wecom.customer_says(kfid, f"wmBurst{customer:05d}", text)
    return entered


def drain(sandbox: Sandbox, runs_dir: Path, outcome: Outcome, total: int, replies: int, limit: float) -> None:
    """Wait, with a progress bar, until every text was handled and every answer sent."""
    deadline = time.monotonic() + limit
    with tqdm(total=total, desc=f"{outcome.workers} worker(s)", unit="msg", file=sys.stderr) as bar:
        while True:
            handled = sum(1 for _, text in read_runs(runs_dir) if text.startswith("wmBurst"))
            bar.update(handled - bar.n)
            if handled >= total and len(sandbox.wecom.state.sent) >= replies + 1:
                outcome.callbacks_then = len(sandbox.wecom.callbacks)
                return
            if time.monotonic() > deadline:
                return
            time.sleep(0.25)


def tally(outcome: Outcome, sandbox: Sandbox, runs_dir: Path, entered: Dict[str, float]) -> None:
    runs = sorted((when, text) for when, text in read_runs(runs_dir) if text in entered)
    counts = collections.Counter(text for _, text in runs)
    outcome.handled = len(runs)
    outcome.twice = sum(n - 1 for n in counts.values() if n > 1)
    outcome.lost = sum(1 for text in entered if text not in counts)
    first_run = {}
    for when, text in runs:
        first_run.setdefault(text, when)
    outcome.start_latency = [first_run[t] - entered[t] for t in first_run]
    outcome.out_of_order = out_of_order([text for _, text in runs])
    sends = sandbox.calls_to(SEND)
    outcome.send_errors = sum(1 for call in sends if call.errcode != 0)
    outcome.syncs = len(sandbox.calls_to("/cgi-bin/kf/sync_msg"))
    arrived = {call.body["text"]["content"]: call.at for call in sends if call.errcode == 0}
    sent = [m["text"]["content"] for m in sandbox.wecom.sent if m["touser"].startswith("wmBurst")]
    expected = {answer_of(t): t for t in entered if answer_of(t)}
    sent_counts = collections.Counter(sent)
    outcome.replies = len(sent)
    outcome.replies_twice = sum(n - 1 for n in sent_counts.values() if n > 1)
    outcome.replies_missing = sum(1 for reply in expected if reply not in sent_counts)
    outcome.replies_out_of_order = out_of_order([expected[reply] for reply in sent if reply in expected])
    outcome.reply_latency = [arrived[reply] - entered[text] for reply, text in expected.items() if reply in arrived]
    last = max([when for when, _ in runs] + list(arrived.values()) or [0.0])
    outcome.drained_in = last - min(entered.values())


def out_of_order(texts: List[str]) -> int:
    """Texts coming before an earlier text of the same customer (``wmBurstNNNNN #i``)."""
    latest: Dict[str, int] = {}
    wrong = 0
    for text in texts:
        customer, number = text.rstrip(QUESTION).split(" #")
        if int(number) < latest.get(customer, -1):
            wrong += 1
        latest[customer] = max(latest.get(customer, -1), int(number))
    return wrong


def run(workers: int, args: argparse.Namespace, scratch: Path) -> Outcome:
    runs_dir = scratch / f"runs-{workers}"
    runs_dir.mkdir(parents=True)
    flush_redis(args.redis_url)
    outcome = Outcome(workers, os.getloadavg()[0])
    sandbox = Sandbox()
    sandbox.wecom.latency = args.latency
    kfid = sandbox.wecom.add_account("客服")
    with sandbox.serve() as api:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("KF_", "BENCH_"))}
        env.update(KF_WECOM_CORPID=sandbox.wecom.corpid, KF_WECOM_SECRET=sandbox.wecom.secret,
                   KF_WECOM_TOKEN=WECOM_TOKEN, KF_WECOM_AES_KEY=AES_KEY, KF_WECOM_URL=CALLBACK,
                   KF_WECOM_API_BASE_URL=api.url, KF_REDIS_URL=args.redis_url, BENCH_RUNS_DIR=str(runs_dir),
                   PYTHONDONTWRITEBYTECODE="1")
        server = WeComServer(sandbox, env, scratch, workers)
        try:
            server.start(None)
            warm_up(sandbox, kfid, runs_dir)
            cpu = server.cpu_seconds()
            began = time.monotonic()
            entered = burst(sandbox, kfid, args)
            outcome.written_in = time.monotonic() - began
            total, replies = args.customers * args.each, args.customers * args.replies
            drain(sandbox, runs_dir, outcome, total, replies, args.timeout)
            outcome.cpu = server.cpu_seconds() - cpu
            sandbox.wecom.wait_for_callbacks(args.timeout)
            leases = RedisTokenStore(redis.Redis.from_url(args.redis_url), token_store_name(sandbox.wecom.corpid))
            wait_until(lambda: leases.holder(LEASE_PREFIX + kfid) is None, 60, "the last pull's end")
            tally(outcome, sandbox, runs_dir, entered)
        finally:
            server.stop()
    return outcome


def ms(values: List[float], q: float) -> str:
    if not values:
        return "—"
    if q >= 1:
        return f"{max(values) * 1000:.0f}"
    return f"{statistics.quantiles(values, n=100, method='inclusive')[int(q * 100) - 1] * 1000:.0f}"


def render(outcomes: List[Outcome], args: argparse.Namespace) -> str:
    header = ("| workers | texts | handled | twice | not handled | out of order | answers sent | missing · twice · "
              "out of order | burst written s | drained s | **texts/s** | answer latency p50 · p99 · max ms | "
              "handler start p50 · p99 ms | sync_msg calls | send_msg errors | worker CPU s | callbacks answered "
              "when drained | load avg before |")
    lines = [header,
             "|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---|---|---:|---:|---:|---:|---:|"]
    total = args.customers * args.each
    for o in outcomes:
        rate = total / o.drained_in if o.drained_in > 0 else 0.0
        lines.append(
            f"| {o.workers} | {total:,} | {o.handled:,} | {o.twice} | {o.lost} | {o.out_of_order} | {o.replies:,} "
            f"| {o.replies_missing} · {o.replies_twice} · {o.replies_out_of_order} | {o.written_in:.1f} "
            f"| {o.drained_in:.1f} | **{rate:,.0f}** | {ms(o.reply_latency, .5)} · {ms(o.reply_latency, .99)} · "
            f"{ms(o.reply_latency, 1)} | {ms(o.start_latency, .5)} · {ms(o.start_latency, .99)} | {o.syncs} "
            f"| {o.send_errors} | {o.cpu:.1f} | {o.callbacks_then:,} | {o.load_before:.2f} |")
    return "\n".join(lines)


def method(args: argparse.Namespace) -> str:
    return (f"The sandbox plays WeCom in the benchmark's process, every WeCom call answered after "
            f"{args.latency * 1000:g} ms (`sandbox.wecom.latency`). The bot: bench/apps/wecom_app.py under gunicorn "
            f"(sync workers), 微信客服 alone, KF_REDIS_URL {args.redis_url} (flushed before each run). After one "
            f"warm-up message (the cursor stored), {args.customers:,} customers write {args.each} texts each, "
            f"taking turns, as fast as the sandbox takes them: {args.customers * args.each:,} texts, each a "
            f"`kf_msg_or_event` callback. Each customer's last {args.replies} are questions the bot answers through "
            "`send_msg`; the others it records only. Handled, twice, not handled, out of order: from the bot's "
            "side (a line per handler run). Answers: from the sandbox's record of sends. texts/s: the texts over "
            "the time from the first entering the sandbox to the last handled or answered. Answer latency: from a "
            "question entering the sandbox (its callback made) to its `send_msg` reaching the sandbox; handler "
            "start: to its handler starting. Worker CPU: the workers' user + system seconds over the burst.")


def parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=1000)
    parser.add_argument("--each", type=int, default=10, help="texts each customer writes (default 10)")
    parser.add_argument("--replies", type=int, default=5, help="of them, the last ones answered (1–5, default 5)")
    parser.add_argument("--workers", default="1,3", help="gunicorn worker counts to run, in turn (default 1,3)")
    parser.add_argument("--latency", type=float, default=0.02, help="seconds WeCom takes to answer (default 0.02)")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/12", help="flushed before each run")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds a run may take to drain")
    parser.add_argument("--results", type=Path, default=BENCH / "RESULTS.md")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    try:
        args.workers = [int(w) for w in args.workers.split(",") if w.strip()]
    except ValueError:
        parser.error("--workers takes worker counts separated by commas, e.g. 1,3")
    if not args.workers or any(not 1 <= w <= 16 for w in args.workers):
        parser.error("--workers: each count must be 1–16")
    if not 1 <= args.customers <= 100_000 or not 1 <= args.each <= 1000:
        parser.error("--customers must be 1–100000 and --each 1–1000")
    if not 1 <= args.replies <= min(5, args.each):
        parser.error("--replies must be 1–5 (WeCom takes 5 messages after a customer's last) and at most --each")
    if not 0 <= args.latency <= 5:
        parser.error("--latency must be 0–5 seconds")
    return args


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    command = " ".join(["python bench/wecom_burst.py",
                        *(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))])
    began = time.monotonic()
    outcomes = []
    with tempfile.TemporaryDirectory(prefix="kf-wecom-burst-") as scratch:
        for workers in args.workers:
            outcomes.append(run(workers, args, Path(scratch)))
    when = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    text = "\n".join([SECTION, "", f"`{command}` — {when}, {(time.monotonic() - began) / 60:.1f} min.", "",
                      f"Machine: {machine()}. Code: {revision()}. Load average (1, 5, 15 min) at the end: "
                      + ", ".join(f"{x:.2f}" for x in os.getloadavg()) + ".", "", method(args), "",
                      render(outcomes, args)])
    print()
    print(text)
    if not args.no_write:
        write_section(args.results, text, SECTION)
        print(f"written to {args.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
