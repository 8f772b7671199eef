"""Push XML → wechatpy message, with the same result as ``wechatpy.parse_message`` and less work.

wechatpy turns the XML into a dict with xmltodict, whose Python callbacks run for
every tag and text node: the costliest step of the pipeline's own work
(``bench/profile_webhook.py`` measures it). Most pushes WeChat sends are flat —
``<xml>`` holding elements that each hold one CDATA section or plain text — and a
regular expression reads those, element by element, with no callback per node.
The other plain documents (a few events nest elements, or repeat one) go
through the C tree builder of ``xml.etree``. Anything else (attributes, text
beside elements, a DOCTYPE, namespaces, ``xml:``-prefixed names, deep nesting,
entity or character references, a document the tree builder refuses) is handed
to xmltodict as before, so results and errors are exactly wechatpy's.
"""
from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from typing import Any, Dict, Optional

import xmltodict
from wechatpy import parse_message as wechatpy_parse_message
from wechatpy.events import EVENT_TYPES
from wechatpy.messages import MESSAGE_TYPES, UnknownMessage

__all__ = ["plain_fields", "parse_fields", "parse_message", "message_from_fields"]

_MAX_DEPTH = 8  # WeChat nests two levels deep (SendPicsInfo > PicList > item)

# A flat document, in the strict form whose meaning is plain to see: no declaration, references, comments,
# attributes, namespaces, carriage returns (XML turns them into line feeds) or characters XML forbids.
_NAME = r"[A-Za-z_][A-Za-z0-9_.\-]*"
_FORBIDDEN = "\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff"
_CDATA_BODY = rf"[^\]\r{_FORBIDDEN}]*(?:\](?!\]>)[^\]\r{_FORBIDDEN}]*)*"  # anything but "]]>"
_TEXT = rf"[^<&\]\r{_FORBIDDEN}]*"
# One element, after the whitespace before it; a flat document is ``<xml>``, one or more of these, ``</xml>``.
_FLAT_ELEMENT = re.compile(rf"[ \t\n]*<(?P<name>{_NAME})>(?:<!\[CDATA\[({_CDATA_BODY})\]\]>|({_TEXT}))</(?P=name)>")
_FLAT_END = re.compile(r"[ \t\n]*</xml>[ \t\n]*")


class _NotPlain(Exception):
    """The document needs xmltodict's own handling."""


def plain_fields(xml: str) -> Optional[Dict[str, Any]]:
    """The fields of a plain ``<xml>`` document as xmltodict gives them, or ``None`` if it is not one.

    As xmltodict does: text is stripped of surrounding whitespace, empty text is
    ``None``, an element holding elements is a dict and a repeated one a list.
    """
    # xmltodict does not expand the entities a DOCTYPE declares, and keeps namespace declarations as
    # attributes; the tree builder would expand the one and drop the other.
    if "<!DOCTYPE" in xml or "xmlns" in xml:
        return None
    fields = _flat_fields(xml)
    if fields is not None:
        return fields
    try:
        root = ET.fromstring(xml)
        if root.tag != "xml" or not len(root):
            return None
        return _value(root, 0)
    except (ET.ParseError, _NotPlain):
        return None


def _flat_fields(xml: str) -> Optional[Dict[str, Any]]:
    """The fields of a flat document (see ``_FLAT_ELEMENT``), or ``None`` if it is not one."""
    if not xml.startswith("<xml>"):
        return None
    fields: Dict[str, Any] = {}
    end = 5
    element = _FLAT_ELEMENT.match(xml, end)
    if element is None:
        return None
    while element is not None:
        name, cdata, text = element.groups()
        if name in fields:  # a repeated element is a list: the tree builder's case
            return None
        fields[name] = (cdata or text or "").strip() or None
        end = element.end()
        element = _FLAT_ELEMENT.match(xml, end)
    return fields if _FLAT_END.fullmatch(xml, end) else None


def _value(element: ET.Element, depth: int) -> Any:
    # "{uri}name": the tree builder resolves the always-declared xml: prefix, which xmltodict keeps as written.
    if element.attrib or element.tag.startswith("{"):
        raise _NotPlain
    if not len(element):
        return (element.text.strip() or None) if element.text else None
    if depth == _MAX_DEPTH or _holds_text(element.text) or any(_holds_text(child.tail) for child in element):
        raise _NotPlain
    fields: Dict[str, Any] = {}
    for child in element:
        value = _value(child, depth + 1)
        if child.tag not in fields:
            fields[child.tag] = value
        elif isinstance(fields[child.tag], list):
            fields[child.tag].append(value)
        else:
            fields[child.tag] = [fields[child.tag], value]
    return fields


def _holds_text(text: Optional[str]) -> bool:
    return bool(text and not text.isspace())


def parse_fields(xml: str) -> Any:
    """``xmltodict.parse(xml)["xml"]``, faster for plain documents; raises what xmltodict raises."""
    fields = plain_fields(xml)
    return fields if fields is not None else xmltodict.parse(xml)["xml"]


def parse_message(xml: str) -> Any:
    """``wechatpy.parse_message(xml)``, faster for plain pushes; raises what wechatpy raises."""
    fields = plain_fields(xml)
    if fields is None or not isinstance(fields.get("MsgType"), str):
        return wechatpy_parse_message(xml)
    return message_from_fields(fields)


def message_from_fields(message: Dict[str, Any]) -> Any:
    """The wechatpy message for a push's fields (as :func:`parse_fields` gives them), as ``wechatpy.parse_message``
    makes it; the fields must hold a text ``MsgType`` and, for events, a text ``Event`` if any (wechatpy
    raises otherwise). Takes ``message`` over (a follow through a QR code rewrites Event and EventKey)."""
    # wechatpy.parser.parse_message after its xmltodict call, step for step (tests/test_pushxml.py holds the two
    # to the same classes and fields).
    message_type = message["MsgType"].lower()
    if message_type != "event" and not message_type.startswith("device_"):
        return MESSAGE_TYPES.get(message_type, UnknownMessage)(message)
    event_type = message["Event"].lower() if "Event" in message else None
    if event_type is None and message_type.startswith("device_"):
        event_type = message_type
    elif message_type.startswith("device_"):
        event_type = f"device_{event_type}"
    if event_type == "subscribe" and message.get("EventKey"):
        event_key = message["EventKey"]
        if event_key.startswith(("scanbarcode|", "scanimage|")):
            event_type = message["Event"] = "subscribe_scan_product"
        elif event_key.startswith("qrscene_"):
            event_type = message["Event"] = "subscribe_scan"
            message["EventKey"] = event_key[len("qrscene_"):]
    return EVENT_TYPES.get(event_type, UnknownMessage)(message)
