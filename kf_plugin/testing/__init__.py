"""Helpers for testing a bot built on kf_plugin: pushes signed as WeChat signs them, and the WeChat API sandbox.

::

    from kf_plugin.testing import Sandbox, WeChatTestClient

    client = WeChatTestClient(app)
    answer = client.send_text("转人工")
    assert answer.message_type == "transfer_customer_service"

    with Sandbox().serve() as server:
        ...  # point KF_API_BASE_URL at server.url

:mod:`.client` holds the push side (:class:`WeChatTestClient`, :class:`PushSigner`,
:func:`message_xml`, :class:`Answer`); :mod:`.sandbox` is a stand-in for the WeChat API
on a loopback port. ``Sandbox`` is imported on first use, so a test that only pushes
never loads the sandbox's HTTP server.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any, List

from .client import Answer, PushSigner, WeChatTestClient, message_xml

if TYPE_CHECKING:
    from .sandbox import Sandbox

__all__ = ["message_xml", "PushSigner", "Answer", "WeChatTestClient", "Sandbox"]

# Names served from the sandbox package on first access rather than at import.
_FROM_SANDBOX = frozenset({"Sandbox"})


def __getattr__(name: str) -> Any:
    if name in _FROM_SANDBOX:
        return getattr(importlib.import_module(".sandbox", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> List[str]:
    return sorted(set(globals()) | _FROM_SANDBOX)
