"""Settings every system under test shares: the account's credentials and what triggers a transfer."""
from __future__ import annotations

import os

TOKEN = "benchToken2024"
APPID = "wxbench000000000"
# 43 letters and digits, as the WeChat console shows an EncodingAESKey.
AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
ACCOUNT = "gh_bench_account"
TRIGGER = "转人工"
URL = "/wechat"


def safe_mode() -> bool:
    """``BENCH_MODE=aes``: pushes arrive encrypted and replies go out encrypted."""
    return os.environ.get("BENCH_MODE", "plain") == "aes"
