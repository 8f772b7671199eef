"""quick_init: the cheaper constructor keeps what a frozen dataclass promises."""
from __future__ import annotations

import dataclasses
import inspect
from dataclasses import dataclass, field
from typing import List, Optional

import pytest

from kf_plugin.frozen import quick_init
from kf_plugin.lifecycle import Change, Conversation, Stage


@quick_init
@dataclass(frozen=True)
class Point:
    x: int
    y: int = 0
    label: Optional[str] = None


@quick_init
@dataclass(frozen=True)
class Checked:
    value: int

    def __post_init__(self) -> None:
        if self.value < 0:
            raise ValueError("negative")


def test_fields_defaults_and_keywords() -> None:
    assert (Point(1).x, Point(1).y, Point(1).label) == (1, 0, None)
    assert Point(1, 2, "a") == Point(x=1, y=2, label="a") == Point(label="a", y=2, x=1)
    assert repr(Point(1)) == "Point(x=1, y=0, label=None)"
    with pytest.raises(TypeError):
        Point()  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        Point(1, z=3)  # type: ignore[call-arg]


def test_still_frozen_hashable_and_replaceable() -> None:
    point = Point(1, 2)
    with pytest.raises(dataclasses.FrozenInstanceError):
        point.x = 5  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        del point.y  # type: ignore[misc]
    assert hash(point) == hash(Point(1, 2)) and point != Point(1, 3)
    assert dataclasses.replace(point, y=7) == Point(1, 7)
    assert dataclasses.asdict(point) == {"x": 1, "y": 2, "label": None}


def test_post_init_runs() -> None:
    assert Checked(1).value == 1
    with pytest.raises(ValueError):
        Checked(-1)
    with pytest.raises(ValueError, match="no such change"):
        Change("bogus", at=1.0)


def test_signature_is_the_dataclass_one() -> None:
    assert list(inspect.signature(Conversation).parameters) == [
        "openid", "stage", "since", "agent", "reason", "handoff_id", "noticed_at"]
    assert Conversation("o") == Conversation("o", Stage.BOT, 0.0, None, None, None, 0.0)


def test_refuses_what_it_cannot_reproduce() -> None:
    @dataclass
    class Mutable:
        x: int

    @dataclass(frozen=True)
    class Factory:
        items: List[int] = field(default_factory=list)

    with pytest.raises(TypeError):
        quick_init(Mutable)
    with pytest.raises(TypeError):
        quick_init(Factory)
    with pytest.raises(TypeError):
        quick_init(int)
