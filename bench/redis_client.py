"""What one Redis command costs the caller: redis-py against the webhook's own connection (hiredis on a socket).

    python bench/redis_client.py [--commands 20000] [--repeat 5] [--redis-url redis://127.0.0.1:6379/8]

1. The claim the webhook makes for every push (``SET key P NX PX 60000``, a new key each time), sent in a
   tight loop through a redis-py client as kf_plugin opens it and through the
   :class:`~kf_plugin.state.writebehind.RespConnection` built from that client.
2. The round trip a push of the webhook makes: the claim carrying the previous push's reply and window grant,
   with the grant as the webhook sends it (EVAL of the window script), as EVALSHA, and — for comparison, a
   layout kf_plugin does not use — as five plain commands on a sorted set per user; beside each, the time
   Redis itself spent running the batch (its commandstats).

Printed: wall and CPU µs of the caller per command or batch, best of ``--repeat`` runs, and whether redis-py
uses hiredis. Run it pinned to see what a wake-up across CPUs costs, e.g. with Redis on CPU 0
(``taskset -p -c 0 <redis pid>``): ``taskset -c 0 python bench/redis_client.py``, then ``taskset -c 1 …``.
The keys are deleted afterwards.
"""
from __future__ import annotations

import argparse
import sys
import time
import uuid
from typing import Callable, Optional, Sequence, Tuple

import redis

from kf_plugin.state import Grant
from kf_plugin.state.redis import _ADD, RedisReplayStore, RedisWindowStore
from kf_plugin.state.writebehind import Command, RespConnection


def timed(run: Callable[[int], object], count: int) -> Tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    for i in range(count):
        run(i)
    return (time.perf_counter() - wall) / count * 1e6, (time.process_time() - cpu) / count * 1e6


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--commands", type=int, default=20000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/8")
    args = parser.parse_args(argv)
    client = redis.Redis.from_url(args.redis_url, socket_timeout=1.0, socket_connect_timeout=1.0,
                                  health_check_interval=30)  # as kf_plugin.state.shared.open_state opens it
    fast = RespConnection.for_client(client)
    if fast is None:
        print("hiredis is not installed: pip install 'kf-plugin[redis]'", file=sys.stderr)
        return 1
    prefix = f"kf-bench:{uuid.uuid4().hex}:"
    replies, windows = RedisReplayStore(client, prefix), RedisWindowStore(client, prefix)
    sha = client.script_load(_ADD)
    now = time.time()

    def batch(i: int, grant: Callable[[str], Sequence[Command]]) -> None:
        fast.execute([replies.complete_command(f"r{i}", "<xml>" + "x" * 240 + "</xml>", 60), *grant(f"o{i:027d}"),
                      ("SET", f"{prefix}push:{i}", b"P", "NX", "PX", 60000)])

    def evalsha(user: str) -> Sequence[Command]:
        return [("EVALSHA", sha, *windows.add_grant_command(user, Grant("message", 5, now + 172800), now)[2:])]

    def sorted_set(user: str) -> Sequence[Command]:
        key, expires = f"{prefix}z:{user}", now + 172800
        return [("ZADD", key, expires, f"message|5|{expires!r}|0"), ("ZREMRANGEBYSCORE", key, "-inf", now),
                ("ZREMRANGEBYRANK", key, 0, -9), ("PEXPIRE", key, 172800000, "NX"), ("PEXPIRE", key, 172800000, "GT")]

    batches = {
        "claim + reply + grant as EVAL (what the webhook sends)":
            lambda i: batch(i, lambda user: [windows.add_grant_command(user, Grant("message", 5, now + 172800),
                                                                       now)]),
        "claim + reply + grant as EVALSHA": lambda i: batch(i, evalsha),
        "claim + reply + grant as 5 sorted-set commands": lambda i: batch(i, sorted_set),
    }
    ways = {
        "redis-py Redis.set(nx=True, px=60000)":
            lambda i: client.set(f"{prefix}a{i}", b"P", nx=True, px=60000),
        "RespConnection.execute([SET NX PX])":
            lambda i: fast.execute([("SET", f"{prefix}b{i}", b"P", "NX", "PX", 60000)]),
    }
    best = {name: (float("inf"), float("inf")) for name in [*ways, *batches]}
    redis_time = {name: float("inf") for name in batches}
    try:
        for round_ in range(args.repeat):
            for name, run in [*ways.items(), *batches.items()]:
                spent = redis_usec(client)
                wall, cpu = timed(lambda i: run(round_ * args.commands + i), args.commands)
                best[name] = (min(best[name][0], wall), min(best[name][1], cpu))
                if name in batches:
                    redis_time[name] = min(redis_time[name], (redis_usec(client) - spent) / args.commands)
    finally:
        for key in client.scan_iter(match=prefix + "*", count=1000):
            client.delete(key)
        fast.close()
    print(f"redis-py {redis.__version__}, hiredis parser: {redis.utils.HIREDIS_AVAILABLE}; "
          f"best of {args.repeat} × {args.commands:,} commands")
    print("| client | wall µs/command | CPU µs/command |\n|---|---:|---:|")
    for name in ways:
        print(f"| {name} | {best[name][0]:.1f} | {best[name][1]:.1f} |")
    print("\n| one push's round trip, through RespConnection | wall µs | CPU µs | Redis µs |\n|---|---:|---:|---:|")
    for name in batches:
        print(f"| {name} | {best[name][0]:.1f} | {best[name][1]:.1f} | {redis_time[name]:.1f} |")
    return 0


def redis_usec(client: "redis.Redis") -> int:
    """µs Redis has spent running commands since it started (its commandstats)."""
    return sum(int(v.get("usec", 0)) for v in client.info("commandstats").values() if isinstance(v, dict))


if __name__ == "__main__":
    sys.exit(main())
