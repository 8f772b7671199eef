"""What one Redis command costs the caller: redis-py against the webhook's own connection (hiredis on a socket).

    python bench/redis_client.py [--commands 20000] [--repeat 5] [--redis-url redis://127.0.0.1:6379/8]

The command is the claim the webhook makes for every push (``SET key P NX PX 60000``, a new key each time),
sent in a tight loop through (1) a redis-py client as kf_plugin opens it and (2) the
:class:`~kf_plugin.state.writebehind.RespConnection` built from that client. Printed: wall and CPU µs per
command, best of ``--repeat`` runs, and whether redis-py uses hiredis. The keys are deleted afterwards.
"""
from __future__ import annotations

import argparse
import sys
import time
import uuid
from typing import Callable, Optional, Sequence, Tuple

import redis

from kf_plugin.state.writebehind import RespConnection


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
    ways = {
        "redis-py Redis.set(nx=True, px=60000)":
            lambda i: client.set(f"{prefix}a{i}", b"P", nx=True, px=60000),
        "RespConnection.execute([SET NX PX])":
            lambda i: fast.execute([("SET", f"{prefix}b{i}", b"P", "NX", "PX", 60000)]),
    }
    best = {name: (float("inf"), float("inf")) for name in ways}
    try:
        for round_ in range(args.repeat):
            for name, run in ways.items():
                wall, cpu = timed(lambda i: run(round_ * args.commands + i), args.commands)
                best[name] = (min(best[name][0], wall), min(best[name][1], cpu))
    finally:
        for key in client.scan_iter(match=prefix + "*", count=1000):
            client.delete(key)
        fast.close()
    print(f"redis-py {redis.__version__}, hiredis parser: {redis.utils.HIREDIS_AVAILABLE}; "
          f"best of {args.repeat} × {args.commands:,} commands")
    print("| client | wall µs/command | CPU µs/command |\n|---|---:|---:|")
    for name, (wall, cpu) in best.items():
        print(f"| {name} | {wall:.1f} | {cpu:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
