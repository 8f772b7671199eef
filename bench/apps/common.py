"""Settings every system under test shares: the account's credentials, the pushes and the answers they expect.

Two kinds of push (``BENCH_PUSH``, set by bench/throughput.py): ``transfer`` (the default), a text asking for
a human that a kf rule answers with a transfer; ``common``, a text no kf rule takes, which the bot's own
handler answers with the text reply :data:`REPLY_TEXT`.
"""
from __future__ import annotations

import os

TOKEN = "benchToken2024"
APPID = "wxbench000000000"
# 43 letters and digits, as the WeChat console shows an EncodingAESKey.
AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
ACCOUNT = "gh_bench_account"
TRIGGER = "转人工"
URL = "/wechat"
PUSH_KINDS = ("transfer", "common")
TRANSFER_TEXT = f"你好，请帮我{TRIGGER}"
# Everyday texts no rule of bench/throughput.py's rule file takes (it checks that before every run).
COMMON_TEXTS = ("今天天气怎么样", "你们周末营业吗", "谢谢，我知道了", "明天下午三点可以去吗", "请问怎么注册会员",
                "好的", "收货地址写错了怎么改", "早上好")
REPLY_TEXT = "收到"


def safe_mode() -> bool:
    """``BENCH_MODE=aes``: pushes arrive encrypted and replies go out encrypted."""
    return os.environ.get("BENCH_MODE", "plain") == "aes"


def common_push() -> bool:
    """``BENCH_PUSH=common``: the pushes are texts no kf rule takes, to be answered with :data:`REPLY_TEXT`.

    :raises ValueError: ``BENCH_PUSH`` is set to something else than ``transfer`` or ``common``.
    """
    kind = os.environ.get("BENCH_PUSH", "transfer")
    if kind not in PUSH_KINDS:
        raise ValueError(f"BENCH_PUSH must be one of {', '.join(PUSH_KINDS)}, not {kind!r}")
    return kind == "common"
