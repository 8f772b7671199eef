"""What the control endpoints (``/sandbox/...``) share: :class:`Refused`, and reading a request's JSON body.

Both the Official Account's endpoints (:mod:`.control`) and WeCom's (:mod:`.wecom.control`) raise
:class:`Refused`; :mod:`.control` answers it as ``{"error": ...}`` with its status.
"""
from __future__ import annotations

import json
from typing import Any, Dict

from flask import request

__all__ = ["Refused", "json_body", "text_field"]


class Refused(Exception):
    """A control call that cannot be done: the HTTP status and a message naming what is wrong."""

    def __init__(self, status: int, message: str):
        self.status = status
        self.message = message
        super().__init__(message)


def json_body() -> Dict[str, Any]:
    """The current request's JSON object; ``{}`` for an empty body.

    :raises Refused: 400 a body that is not a JSON object.
    """
    raw = request.get_data()
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise Refused(400, "the body must be a JSON object (UTF-8)") from None
    if not isinstance(body, dict):
        raise Refused(400, f"the body must be a JSON object, got {type(body).__name__}")
    return body


def text_field(body: Dict[str, Any], name: str) -> str:
    """The body's field ``name``.

    :raises Refused: 400 the field is missing, empty or not a string.
    """
    value = body.get(name)
    if not isinstance(value, str) or not value:
        raise Refused(400, f"{name!r} must be a non-empty string")
    return value
