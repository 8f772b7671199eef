"""Per-message handling cost in process — parse → route → render — as the rule count grows.

    python bench/rules_scale.py [--repeat 5] [--number 2000]

For 10, 100, 1,000 and 10,000 keyword rules (and the same with one rule in ten a
regular expression), the cost of a text push that matches no rule, of one that
matches the last rule, and of one that matches it written in Traditional Chinese
(every keyword and text folded, the default). Target: at 10,000 rules at most
1.5 × the cost at 10.
"""
from __future__ import annotations

import argparse
import platform
import timeit
from typing import Dict, List, Tuple

from kf_plugin import KfPlugin, Rule, render_reply
from kf_plugin.testing import message_xml
from kf_plugin.webhook import parse_push

COUNTS = (10, 100, 1_000, 10_000)


def build_rules(count: int, regex_every: int = 0) -> List[Rule]:
    rules = []
    for i in range(count - 1):
        if regex_every and i % regex_every == 0:
            rules.append(Rule.build(f"regex-{i}", regex=f"订单{i}号$"))
        else:
            rules.append(Rule.build(f"keyword-{i}", keywords=[f"产品{i}", f"型号{i}"]))
    rules.append(Rule.build("the-last", keywords=["转人工"]))
    return rules


def cost(plugin: KfPlugin, xml: str, number: int, repeat: int) -> float:
    """Best per-message time in microseconds."""
    def handle() -> None:
        reply = plugin.handle(parse_push(xml))
        if reply is not None:
            render_reply(reply)
    handle()  # builds whatever is built lazily
    return min(timeit.repeat(handle, number=number, repeat=repeat)) / number * 1e6


def measure(regex_every: int, number: int, repeat: int) -> Dict[int, Tuple[float, ...]]:
    results = {}
    for count in COUNTS:
        plugin = KfPlugin(rules=build_rules(count, regex_every))
        miss = message_xml(text="今天天气怎么样", msg_id=1)
        hits = [message_xml(text="我要转人工", msg_id=2), message_xml(text="我要轉人工", msg_id=3)]
        assert plugin.handle(parse_push(miss)) is None
        for hit in hits:
            assert plugin.handle(parse_push(hit)).type == "transfer_customer_service"
        results[count] = tuple(cost(plugin, xml, number, repeat) for xml in (miss, *hits))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--number", type=int, default=2000)
    args = parser.parse_args()
    print(f"Python {platform.python_version()} on {platform.machine()}; best of {args.repeat} × {args.number}")
    for label, regex_every in (("keyword rules", 0), ("keyword rules, one in ten a regex", 10)):
        results = measure(regex_every, args.number, args.repeat)
        base = results[COUNTS[0]]
        print(f"\n{label}")
        print("| rules | no match (µs) | × | last rule matches (µs) | × | the same in Traditional (µs) | × |")
        print("|---:|---:|---:|---:|---:|---:|---:|")
        for count, costs in results.items():
            cells = " | ".join(f"{value:.1f} | {value / first:.2f}" for value, first in zip(costs, base))
            print(f"| {count:,} | {cells} |")


if __name__ == "__main__":
    main()
