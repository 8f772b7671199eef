"""Where kf_plugin's webhook spends its time per request, in process (no HTTP server), next to the peers.

    python bench/profile_webhook.py [--mode plain|aes|both] [--requests N] [--repeat N] [--redis] [--cprofile]
                                    [--api] [--push transfer|common]

1. Every system of bench/throughput.py (a, c, d, e, f, and b and g when Redis answers) called as a WSGI app on the same
   signed pushes as in the throughput benchmark: µs per request, best of ``--repeat`` runs, no profiler.
2. kf_plugin's request path split into its steps, each timed by a thin wrapper (a perf_counter pair,
   ~0.1–0.3 µs each) around the real function: inclusive µs per request, for (a) and, with Redis, (b).
3. With ``--cprofile``: cProfile's top functions by cumulative time, in µs per request (cProfile's own
   overhead inflates them, call-heavy code most: read them as proportions).

``--api``: (a) and (b) with KF_SECRET and KF_API_BASE_URL at a kf_plugin.testing.Sandbox on loopback, as
bench/throughput.py --api runs them (the token service and the handler thread pool under the reply deadline).
``--push common``: the common push of bench/throughput.py --push common (texts no kf rule takes, answered by
the bot's own handler, and by every other system, with the same text reply) instead of the transfer push.
"""
from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable, Dict, List, Tuple

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from werkzeug.test import EnvironBuilder  # noqa: E402

import throughput as T  # noqa: E402
from kf_plugin.testing import PushSigner  # noqa: E402

MODULES = {"a": "kf_app", "b": "kf_app", "c": "wechatpy_app", "d": "werobot_app", "e": "werobot_app",
           "f": "floor_app", "g": "wechatpy_app"}


def make_app(system: str, mode: str, rules: Path, redis_url: str, api_url: str = "", push: str = "transfer",
             max_clock_skew: int = 0) -> Any:
    """``system``'s app; ``max_clock_skew``: (a) and (b)'s KF_MAX_CLOCK_SKEW when given (a run slowed down by a
    profiler may take longer than the default 300 s to send pushes signed at its start)."""
    for name in [n for n in os.environ if n.startswith(("KF_", "BENCH_"))]:
        del os.environ[name]
    os.environ.update(BENCH_MODE=mode, BENCH_PUSH=push)
    if system in ("a", "b"):
        os.environ["KF_RULES"] = str(rules)
        if max_clock_skew:
            os.environ["KF_MAX_CLOCK_SKEW"] = str(max_clock_skew)
        if api_url:
            os.environ.update(KF_SECRET=T.API_SECRET, KF_API_BASE_URL=api_url)
    if system == "b":
        os.environ["KF_REDIS_URL"] = redis_url
        T.flush_redis(redis_url)
    if system == "e":
        os.environ["BENCH_WEROBOT_SESSION"] = "off"
    if system == "g":
        os.environ["BENCH_REDIS_URL"] = redis_url
        T.flush_redis(redis_url)
    module = __import__(f"apps.{MODULES[system]}", fromlist=["create_app"])
    return module.create_app()


def environs(factory: T.PushFactory, count: int) -> List[Dict[str, Any]]:
    pushes = factory.make(count)
    result = []
    for target, body in zip(pushes.targets, pushes.bodies):
        path, query = target.split("?", 1)
        result.append(EnvironBuilder(path=path, query_string=query, method="POST", data=body,
                                     content_type="text/xml").get_environ())
    return result


def _start_response(status: str, headers: Any, exc_info: Any = None) -> None:
    if not status.startswith("200"):
        raise AssertionError(f"answered {status}")


def call(app: Any, environ: Dict[str, Any]) -> bytes:
    answer = app(environ, _start_response)
    try:
        return b"".join(answer)
    finally:
        getattr(answer, "close", lambda: None)()


def check_answer(system: str, app: Any, factory: T.PushFactory) -> None:
    """One push through ``app``, its answer checked as bench/throughput.py checks them.

    :raises AssertionError: the answer is not the reply the push expects.
    """
    pushes = factory.make(1)
    path, query = pushes.targets[0].split("?", 1)
    environ = EnvironBuilder(path=path, query_string=query, method="POST", data=pushes.bodies[0],
                             content_type="text/xml").get_environ()
    problem = T.answer_problem(call(app, environ), pushes.senders[0], pushes.push, factory.signer)
    if problem:
        raise AssertionError(f"({system}) answered the {pushes.push} push wrongly: {problem}")


def per_request(app: Any, factory: T.PushFactory, count: int, repeat: int) -> float:
    """Best of ``repeat`` runs, µs per request (the inputs are built outside the timed loop)."""
    best = float("inf")
    for _ in range(repeat):
        batch = environs(factory, count)
        started = time.perf_counter()
        for environ in batch:
            call(app, environ)
        best = min(best, (time.perf_counter() - started) / count)
    return best * 1e6


# -- step timing --------------------------------------------------------------------------------------------

class Steps:
    """Inclusive time of named calls, accumulated by wrappers patched onto the real functions."""

    def __init__(self) -> None:
        self.total: Dict[str, float] = defaultdict(float)
        self.calls: Dict[str, int] = defaultdict(int)
        self._undo: List[Tuple[Any, str, Any]] = []

    def wrap(self, owner: Any, attr: str, label: str) -> None:
        original = owner.__dict__[attr] if isinstance(owner, type) else getattr(owner, attr)
        total, calls, clock = self.total, self.calls, time.perf_counter

        def timed(*args: Any, **kwargs: Any) -> Any:
            started = clock()
            try:
                return original(*args, **kwargs)
            finally:
                total[label] += clock() - started
                calls[label] += 1
        setattr(owner, attr, timed)
        self._undo.append((owner, attr, original))

    def undo(self) -> None:
        for owner, attr, original in reversed(self._undo):
            setattr(owner, attr, original)
        self._undo.clear()

    def reset(self) -> None:
        self.total.clear()
        self.calls.clear()


# (label, depth) in the order of the request path; the labels are what Steps.wrap records.
TREE = [
    ("WSGI: Flask app(environ, start_response)", 0),
    ("kf view (_webhook_view)", 1),
    ("Jobs.ensure_started", 2),
    ("Webhook.handle", 2),
    ("verify_signature", 3),
    ("check_timestamp", 3),
    ("check_size", 3),
    ("open_body", 3),
    ("PushCipher.verify (msg_signature)", 4),
    ("PushCipher.decrypt", 4),
    ("parse_push (pushxml.parse_fields + checks + message)", 3),
    ("push_key", 3),
    ("Deduplicator.run", 3),
    ("replay store: claim", 4),
    ("route_and_render", 4),
    ("KfPlugin._answer_push (the webhook's respond)", 5),
    ("WindowTracker.record (48-hour window)", 6),
    ("MessageRouter.dispatch (50 rules)", 6),
    ("to_reply", 6),
    ("render_reply", 5),
    ("replay store: complete", 4),
    ("seal", 3),
    ("PushCipher.encrypt", 4),
]


def instrument(app: Any, steps: Steps) -> Callable[..., Any]:
    """Wrap every step of the request path; returns the original view (to put back)."""
    import kf_plugin.answering as answering
    import kf_plugin.webhook as webhook
    from kf_plugin.router import MessageRouter
    from kf_plugin.scheduling import Jobs
    from kf_plugin.security import PushCipher
    from kf_plugin.webhook import Webhook
    from kf_plugin.window import WindowTracker

    state = app.extensions["kf_plugin"]
    store_type = type(state.webhook.dedupe.store)
    view = app.view_functions["kf_plugin_webhook"]
    app.view_functions["kf_plugin_webhook"] = _timed_function(view, steps, "kf view (_webhook_view)")
    steps.wrap(app, "wsgi_app", "WSGI: Flask app(environ, start_response)")
    steps.wrap(Jobs, "ensure_started", "Jobs.ensure_started")
    for name, label in (("handle", "Webhook.handle"), ("verify_signature", "verify_signature"),
                        ("check_timestamp", "check_timestamp"), ("check_size", "check_size"),
                        ("open_body", "open_body"), ("route_and_render", "route_and_render"), ("seal", "seal")):
        steps.wrap(Webhook, name, label)
    steps.wrap(PushCipher, "verify", "PushCipher.verify (msg_signature)")
    steps.wrap(PushCipher, "decrypt", "PushCipher.decrypt")
    steps.wrap(PushCipher, "encrypt", "PushCipher.encrypt")
    steps.wrap(webhook, "parse_push", "parse_push (pushxml.parse_fields + checks + message)")
    steps.wrap(webhook, "push_key", "push_key")
    steps.wrap(webhook, "render_reply", "render_reply")
    steps.wrap(type(state.webhook.dedupe), "run", "Deduplicator.run")
    steps.wrap(store_type, "acquire", "replay store: acquire (the claim)")
    steps.wrap(store_type, "complete", "replay store: complete (the reply)")
    primary = getattr(state.webhook.dedupe.store, "primary", None)  # Redis behind the memory-first failover
    if primary is not None:
        steps.wrap(type(primary), "acquire", "Redis: the claim script")
        steps.wrap(type(primary), "complete", "Redis: the reply's SET")
    steps.wrap(Webhook, "respond_in_time", "respond_in_time (bot handlers on the thread pool, with API credentials)")
    steps.wrap(state.webhook, "respond", "KfPlugin._answer_push (the webhook's respond)")
    steps.wrap(WindowTracker, "record", "WindowTracker.record (48-hour window)")
    steps.wrap(MessageRouter, "dispatch", "MessageRouter.dispatch (50 rules)")
    steps.wrap(answering, "to_reply", "to_reply")
    return view


def _timed_function(func: Callable[..., Any], steps: Steps, label: str) -> Callable[..., Any]:
    def timed(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return func(*args, **kwargs)
        finally:
            steps.total[label] += time.perf_counter() - started
            steps.calls[label] += 1
    return timed


def step_table(app: Any, factory: T.PushFactory, count: int, repeat: int) -> List[str]:
    steps = Steps()
    view = instrument(app, steps)
    try:
        best: Dict[str, float] = {}
        best_total = float("inf")
        for _ in range(repeat):
            batch = environs(factory, count)
            steps.reset()
            for environ in batch:
                call(app, environ)
            total = steps.total["WSGI: Flask app(environ, start_response)"]
            if total < best_total:
                best_total, best = total, dict(steps.total)
    finally:
        steps.undo()
        app.view_functions["kf_plugin_webhook"] = view
    whole = best["WSGI: Flask app(environ, start_response)"]
    lines = ["| step (inclusive) | µs/request | % of WSGI |", "|---|---:|---:|"]
    for label, depth in TREE:
        if label not in best:
            continue
        spent = best[label] / count * 1e6
        lines.append(f"| {'&nbsp;' * 4 * depth}{label} | {spent:.1f} | {best[label] / whole * 100:.0f}% |")
    view = best.get("kf view (_webhook_view)", 0.0)
    lines.append(f"| Flask/Werkzeug around the view (WSGI − view) | {(whole - view) / count * 1e6:.1f} | "
                 f"{(whole - view) / whole * 100:.0f}% |")
    return lines


def cprofile_table(app: Any, factory: T.PushFactory, count: int, top: int = 35) -> List[str]:
    batch = environs(factory, count)
    profiler = cProfile.Profile()
    profiler.enable()
    for environ in batch:
        call(app, environ)
    profiler.disable()
    stats = pstats.Stats(profiler, stream=io.StringIO())
    rows = []
    for (filename, line, function), (_, ncalls, tottime, cumtime, _) in stats.stats.items():
        rows.append((cumtime, tottime, ncalls, f"{_short(filename)}:{line}({function})"))
    rows.sort(reverse=True)
    lines = ["| function | cumulative µs/request | own µs/request | calls/request |", "|---|---:|---:|---:|"]
    for cumtime, tottime, ncalls, name in rows[:top]:
        lines.append(f"| `{name}` | {cumtime / count * 1e6:.1f} | {tottime / count * 1e6:.1f} | "
                     f"{ncalls / count:.1f} |")
    return lines


def _short(filename: str) -> str:
    for marker in ("site-packages/", "/work/main/", "lib/python3"):
        if marker in filename:
            return filename.split(marker, 1)[1]
    return filename


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mode", choices=("plain", "aes", "both"), default="both")
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/8")
    parser.add_argument("--cprofile", action="store_true")
    parser.add_argument("--api", action="store_true", help="(a) and (b) with API credentials against a sandbox")
    parser.add_argument("--push", choices=T.PUSH_KINDS, default="transfer",
                        help="transfer (default) or common: the kind of push, as bench/throughput.py --push")
    args = parser.parse_args()
    api = T.Sandbox(appid=T.APPID, secret=T.API_SECRET).serve() if args.api else None
    try:
        return profile(args, api.url if api is not None else "")
    finally:
        if api is not None:
            api.stop()


def profile(args: argparse.Namespace, api_url: str) -> int:
    redis_down = T.redis_reachable(args.redis_url)
    if redis_down:
        print(f"(b) skipped: Redis is not reachable at {args.redis_url} ({redis_down})")
    systems = ["a"] + ([] if redis_down else ["b"]) + ["c", "d", "e", "f"] + ([] if redis_down else ["g"])
    with tempfile.TemporaryDirectory(prefix="kf-profile-") as scratch:
        rules = Path(scratch) / "rules.yaml"
        T.write_rules(rules)
        T.check_rule_file(rules, args.push)
        for mode in (["plain", "aes"] if args.mode == "both" else [args.mode]):
            signer = PushSigner(T.TOKEN, T.AES_KEY if mode == "aes" else None, T.APPID)
            factory = T.PushFactory(signer, push=args.push)
            if any(s in T.REDIS_SYSTEMS for s in systems):
                T.flush_redis(args.redis_url)   # before the apps start: a flush under them would be a restart
            apps = {s: make_app(s, mode, rules, args.redis_url, api_url, args.push) for s in systems}
            for system, app in apps.items():  # warm up
                check_answer(system, app, factory)
                for environ in environs(factory, 300):
                    call(app, environ)
            print(f"\n### {mode}, {args.push} push: µs per request in process (WSGI call, no HTTP server), best "
                  f"of {args.repeat} × {args.requests}\n")
            print("| system | µs/request |\n|---|---:|")
            for system, app in apps.items():
                cost = per_request(app, factory, args.requests, args.repeat)
                print(f"| ({system}) {T.SYSTEMS[system][0]} | {cost:.0f} |")
            for system in [s for s in ("a", "b") if s in apps]:
                print(f"\n#### ({system}) {T.SYSTEMS[system][0]}, {mode}: the request path step by step\n")
                print("\n".join(step_table(apps[system], factory, args.requests, args.repeat)))
                if args.cprofile:
                    print(f"\n#### ({system}) {mode}: cProfile, top functions by cumulative time\n")
                    print("\n".join(cprofile_table(apps[system], factory, args.requests)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
