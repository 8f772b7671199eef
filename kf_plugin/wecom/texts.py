"""The texts 微信客服 sends with an event's code (``send_msg_on_event``): the rule file's ``wecom:`` section.

::

    WeComTexts(welcome_text={"default": "您好，请问有什么可以帮您？", "menu": "您好，请选择服务"},
               queue_text="正在为您接入人工客服，请稍候", end_text="本次服务已结束，感谢您的咨询")

Each code allows one message, outside the 5 messages within 48 hours of the customer's last one:

- ``welcome_text``: the answer to ``enter_session`` (its ``welcome_code``, within 20 s) when no rule and no
  handler answered the event itself. One text for every customer, or one per ``scene`` (the link's scene the
  customer came through) with ``default`` for any other scene and for none.
- ``queue_text``: when a hand-off puts the customer in the pool (``service_state/trans``'s ``msg_code``).
- ``taken_text``: when a servicer takes them — from the pool (``session_status_change`` 1) or straight from a
  rule naming the servicer (``trans`` to state 3); both give a code.
- ``end_text``: when the session ends (``session_status_change`` 3, within 20 s).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Dict, Mapping, Optional, Union

__all__ = ["WeComTexts", "DEFAULT_SCENE", "check_scene"]

#: The key of ``welcome_text``'s mapping that answers any scene it does not list (and customers with none).
DEFAULT_SCENE = "default"
_SCENE = re.compile(r"[0-9A-Za-z_-]{1,32}")


def check_scene(scene: str) -> str:
    """``scene`` if WeCom could give it (``enter_session``'s ``scene``). :raises ValueError: otherwise."""
    if not _SCENE.fullmatch(scene):
        raise ValueError(f"{scene!r} is not a scene: a scene is 1–32 characters of 0-9 A-Z a-z _ -")
    return scene


@dataclass(frozen=True)
class WeComTexts:
    """See the module. ``welcome_text``: a text, or a mapping scene → text (``default``: the others).

    :raises ValueError: a blank text, or a mapping key that is not a scene.
    """

    welcome_text: Union[None, str, Mapping[str, str]] = None
    queue_text: Optional[str] = None
    taken_text: Optional[str] = None
    end_text: Optional[str] = None

    def __post_init__(self) -> None:
        welcome = self.welcome_text
        texts: Dict[str, Optional[str]] = {"queue_text": self.queue_text, "taken_text": self.taken_text,
                                           "end_text": self.end_text}
        if isinstance(welcome, Mapping):
            texts.update({f"welcome_text {check_scene(scene)}": text for scene, text in welcome.items()})
        else:
            texts["welcome_text"] = welcome
        blank = [name for name, text in texts.items() if text is not None and not text.strip()]
        if blank:
            raise ValueError(f"blank 微信客服 text: {', '.join(blank)}")
        if isinstance(welcome, Mapping):   # a copy: the caller's dict may change later
            object.__setattr__(self, "welcome_text", dict(welcome))

    def welcome_for(self, scene: Optional[str]) -> Optional[str]:
        """The welcome for a customer who came through ``scene`` (``None``: no scene), or ``None``."""
        welcome = self.welcome_text
        if not isinstance(welcome, Mapping):
            return welcome
        return welcome.get(scene or DEFAULT_SCENE, welcome.get(DEFAULT_SCENE))
