"""What a push costs in Redis calls: the claim script and the reply SET, through redis-py as kf_plugin opens it.

    python bench/redis_client.py [--pushes 20000] [--repeat 5] [--redis-url redis://127.0.0.1:6379/8]

A push whose reply is known before its claim (a kf rule that opens no session) makes one call: the claim (one
EVALSHA of RedisReplayStore's claim script, which also checks the plain push's query binding, records its
sender's send rights and stores the reply). Any other push makes two: the claim, then, once the handler
returned, a SET of the rendered reply. Each is timed alone in a tight loop, then the two together through kf_plugin's
own Deduplicator over open_state's stores (the worker's memory is asked first, then Redis), beside one
``SET NX PX`` of redis-py for the floor of a round trip. Every push is new (its own key, sender and query).

Printed: wall and CPU µs of the caller per call or push, best of ``--repeat`` runs, and the redis-server's own
CPU µs (user + system, its network and event loop included; the server must run on this machine). Not its
commandstats: a script's time there includes the commands it runs, which count their time again. Run it
pinned to see what a wake-up across CPUs costs, e.g. with Redis on CPU 0 (``taskset -p -c 0 <redis pid>``):
``taskset -c 0 python bench/redis_client.py``, then ``taskset -c 1 …``. The keys are deleted afterwards.
"""
from __future__ import annotations

import argparse
import sys
import time
import uuid
from typing import Callable, Dict, Optional, Sequence, Tuple

import psutil
import redis

from kf_plugin.dedupe import Deduplicator, Known
from kf_plugin.lifecycle import Change, Conversation, Transition, advance, new_handoff_id
from kf_plugin.state import Grant
from kf_plugin.state.base import PushClaim
from kf_plugin.state.shared import open_state

def request(openid: str) -> Transition:
    """The move a transfer of ``openid`` makes from the bot to the queue, as the webhook works it out."""
    change = Change("request", at=time.time(), reason="ask-for-human", handoff_id=new_handoff_id())
    before = Conversation(openid)
    after, record = advance(before, None, change)
    return Transition(change, before, after, record)


REPLY = "<xml>" + "x" * 240 + "</xml>"  # about the size of a rendered transfer reply


def timed(run: Callable[[int], object], count: int) -> Tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    for i in range(count):
        run(i)
    return (time.perf_counter() - wall) / count * 1e6, (time.process_time() - cpu) / count * 1e6


def redis_cpu_us(server: psutil.Process) -> float:
    """The redis-server's CPU time (user + system) since it started, in µs."""
    times = server.cpu_times()
    return (times.user + times.system) * 1e6


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pushes", type=int, default=20000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/8")
    args = parser.parse_args(argv)
    prefix = f"kf-bench-{uuid.uuid4().hex[:8]}:"
    shared = open_state(args.redis_url, "wxbench000000000", prefix)  # as init_app opens it
    client = shared.redis
    server = psutil.Process(int(client.info("server")["process_id"]))
    store = shared.replay.primary  # the RedisReplayStore behind the memory-first failover (reads conversations)
    dedupe = Deduplicator(shared.replay, ttl=60, wait=4, keep_for=300, window=shared.window)  # init_app's
    now = time.time()
    grant = Grant("message", 5, now + 172800)
    run_id = uuid.uuid4().hex[:12]

    def claim(name: str, i: int, answer: Optional[str] = None, conversation: bool = False,
              handoff: bool = False) -> PushClaim:
        openid = f"o{name}{run_id}{i:014d}"
        return PushClaim(f"{name}{run_id}{i}", 300, 3.0, (openid, grant), now,
                         (f"{i}&{run_id}&{name}", "0123456789abcdef0123456789abcdef"), 600, answer,
                         openid if conversation else None, request(openid) if handoff else None)

    ways: Dict[str, Callable[[int], object]] = {
        "redis-py SET NX PX (one round trip, the floor)":
            lambda i: client.set(f"{prefix}floor:{run_id}{i}", b"P", nx=True, px=60000),
        "claim script (RedisReplayStore.acquire: binding, lease, grant)": lambda i: store.acquire(claim("c", i)),
        # The keys the claim script just took: complete() answers each of them.
        "reply SET (RedisReplayStore.complete)": lambda i: store.complete(f"c{run_id}{i}", REPLY, 300),
        "claim script storing a known reply (RedisReplayStore.acquire with an answer)":
            lambda i: store.acquire(claim("k", i, REPLY)),
        "claim script reading the sender's conversation (every push of the webhook)":
            lambda i: store.acquire(claim("v", i, conversation=True)),
        "claim script storing a transfer and the hand-off it opens (a kf rule's transfer)":
            lambda i: store.acquire(claim("h", i, REPLY, conversation=True, handoff=True)),
        "a whole push: Deduplicator.run over open_state (memory, then claim + SET)":
            lambda i: dedupe.run(f"d{run_id}{i}", lambda _: REPLY, grant=(f"od{i:026d}", grant),
                                 binding=(f"{i}&{run_id}&d", "0123456789abcdef0123456789abcdef"), now=now),
        "a whole push, reply known: Deduplicator.run over open_state (memory, then the claim)":
            lambda i: dedupe.run(f"w{run_id}{i}", lambda _: REPLY, grant=(f"ow{i:026d}", grant),
                                 binding=(f"{i}&{run_id}&w", "0123456789abcdef0123456789abcdef"), now=now,
                                 known=Known(REPLY)),
    }
    # Claims a row leaves pending are released after it is timed: held, the store's lease keeper would renew
    # each of them every second in this process during the rows after it. The claim script's own row leaves
    # its claims to the reply SET's row, which completes them.
    pending_after = {"claim script reading the sender's conversation (every push of the webhook)": "v"}
    best = {name: (float("inf"), float("inf"), float("inf")) for name in ways}
    try:
        for round_ in range(args.repeat):
            run_id = uuid.uuid4().hex[:12]  # new keys each round: every claim is a first delivery
            for name, run in ways.items():
                spent = redis_cpu_us(server)
                wall, cpu = timed(run, args.pushes)
                inside = (redis_cpu_us(server) - spent) / args.pushes
                if name in pending_after:
                    for i in range(args.pushes):
                        store.release(f"{pending_after[name]}{run_id}{i}")
                old = best[name]
                best[name] = (min(old[0], wall), min(old[1], cpu), min(old[2], inside))
    finally:
        for key in client.scan_iter(match=f"{prefix}*", count=1000):
            client.delete(key)
    print(f"redis-py {redis.__version__}, hiredis parser: {redis.utils.HIREDIS_AVAILABLE}; "
          f"best of {args.repeat} × {args.pushes:,} pushes")
    print("| call | wall µs | CPU µs | Redis CPU µs |\n|---|---:|---:|---:|")
    for name, (wall, cpu, inside) in best.items():
        print(f"| {name} | {wall:.1f} | {cpu:.1f} | {inside:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
