"""Instructions and simulated cache misses per push of each system's request path, in process, by callgrind.

    python bench/cache_sim.py [--systems a,c] [--pushes 1000] [--warmup 300] [--push transfer]

Each system's app (bench/profile_webhook.py's, no API credentials: no background job calls the API) runs in a
child process under ``valgrind --tool=callgrind --cache-sim=yes``, called as a WSGI app (no HTTP server) on
the signed pushes of bench/throughput.py. Each system runs twice: both runs build the same ``--warmup`` +
``--pushes`` requests first, then one calls the warm-up pushes only and the other all of them; the
difference, divided by ``--pushes``, is what the calls alone cost (start-up, imports and the building of the
requests cancel out). Printed per push: instructions (Ir), first-level instruction-cache misses (I1mr),
first-level data misses on reads and writes (D1mr, D1mw) and last-level misses (ILmr + DLmr + DLmw).

The simulated caches are callgrind's (the first level 32 KiB each, the last level as this machine's): they
count misses, not what a miss costs. bench/instructions.py counts the whole worker under gunicorn instead.
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Dict, List, Optional

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import throughput as T  # noqa: E402

VALGRIND = ["valgrind", "--tool=callgrind", "--cache-sim=yes"]
# Both runs of a system hash strings alike, so that their common part (start-up and warm-up) costs the same in each
# and cancels out of the difference; with a random seed per process it differs by a few tenths of a per cent,
# which a long warm-up turns into several per cent of the measured pushes' count.
SAME_HASHES = {**os.environ, "PYTHONHASHSEED": "0"}
COLUMNS = ("Ir", "I1mr", "D1mr", "D1mw", "LL misses")


def child(system: str, calls: int, built: int, rules: str, push: str) -> None:
    """Build ``built`` requests for ``system``'s app, call the first ``calls`` of them, and leave at once."""
    import logging

    import profile_webhook as P

    from kf_plugin.testing import PushSigner
    logging.disable(logging.WARNING)
    # Under callgrind a long warm-up outlasts the clock-skew window its pushes were signed in.
    app = P.make_app(system, "plain", Path(rules), "redis://127.0.0.1:6379/8", "", push, max_clock_skew=86400)
    requests = P.environs(T.PushFactory(PushSigner(T.TOKEN, None, T.APPID), push=push), built)
    for environ in requests[:calls]:
        P.call(app, environ)
    os._exit(0)   # no interpreter teardown in the counts


def events(dump: Path) -> Dict[str, int]:
    """The totals of a callgrind dump, by event."""
    text = dump.read_text(errors="replace")
    names = re.search(r"^events: (.*)$", text, re.M)
    totals = re.search(r"^(?:summary|totals): (.*)$", text, re.M)
    assert names and totals, f"{dump} holds no totals"
    counts = dict(zip(names.group(1).split(), map(int, totals.group(1).split())))
    counts["LL misses"] = counts["ILmr"] + counts["DLmr"] + counts["DLmw"]
    return counts


def per_push(system: str, args: argparse.Namespace, rules: Path) -> Dict[str, float]:
    built = args.warmup + args.pushes
    runs: List[Dict[str, int]] = []
    for calls in (args.warmup, built):
        with tempfile.TemporaryDirectory(prefix=f"kf-cache-sim-{system}-") as directory:
            dump = Path(directory) / "callgrind.out"
            subprocess.run([*VALGRIND, f"--callgrind-out-file={dump}", sys.executable, __file__, "--child",
                            system, str(calls), str(built), str(rules), args.push],
                           check=True, capture_output=True, timeout=7200, env=SAME_HASHES)
            runs.append(events(dump))
    return {name: (runs[1][name] - runs[0][name]) / args.pushes for name in COLUMNS}


def main(argv: Optional[List[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        child(argv[1], int(argv[2]), int(argv[3]), argv[4], argv[5])
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--systems", default="a,c")
    parser.add_argument("--pushes", type=int, default=1000)
    parser.add_argument("--warmup", type=int, default=300)
    parser.add_argument("--push", choices=("transfer", "common"), default="transfer")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="kf-cache-sim-") as directory:
        rules = Path(directory) / "rules.yaml"
        T.write_rules(rules)
        results = {system: per_push(system, args, rules) for system in args.systems.split(",")}
    print(f"\npython bench/cache_sim.py {' '.join(argv)}; {T.revision()}; {args.pushes} pushes after "
          f"{args.warmup}\n\n| system | " + " | ".join(COLUMNS) + " |\n|---|" + "---:|" * len(COLUMNS))
    for system, counts in results.items():
        print(f"| ({system}) {T.SYSTEMS[system][0]} | " + " | ".join(f"{round(counts[n]):,}" for n in COLUMNS) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
