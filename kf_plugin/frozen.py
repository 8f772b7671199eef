"""A cheaper constructor for the frozen dataclasses built on every push.

A frozen dataclass's generated ``__init__`` stores each field with ``object.__setattr__`` (its own
``__setattr__`` refuses); :func:`quick_init` replaces it with one that writes the fields into the instance's
``__dict__``, which costs about half as much. Everything else the dataclass gives stays as it was: equality,
hashing, ``repr``, :func:`dataclasses.replace`, and the refusal to assign or delete a field.
"""
from __future__ import annotations

import dataclasses
import inspect
from typing import Any, Dict, List, Type, TypeVar

__all__ = ["quick_init"]

T = TypeVar("T")


def quick_init(cls: Type[T]) -> Type[T]:
    """Give the frozen dataclass ``cls`` an ``__init__`` that fills its ``__dict__`` directly (same parameters,
    same defaults, ``__post_init__`` called last as before).

    :raises TypeError: ``cls`` is not a frozen dataclass, or its ``__init__`` takes what this one cannot
        (a default factory, an ``InitVar``, keyword-only fields) — its parameters would differ.
    """
    kind: Any = cls   # a dataclass, as the checks below make sure
    params = getattr(kind, "__dataclass_params__", None)
    if params is None or not params.frozen or "__slots__" in kind.__dict__:
        raise TypeError(f"{kind.__name__} is not a frozen dataclass with a __dict__")
    fields = dataclasses.fields(kind)
    names: List[str] = []
    defaults: Dict[str, Any] = {}
    for field in fields:
        if field.default_factory is not dataclasses.MISSING:
            raise TypeError(f"{kind.__name__}.{field.name}: a default factory is not supported")
        if field.default is dataclasses.MISSING:
            names.append(field.name)
        else:
            defaults[f"_default_{field.name}"] = field.default
            names.append(f"{field.name}=_default_{field.name}")
    stores = "".join(f"    d[{field.name!r}] = {field.name}\n" for field in fields)
    post = "    self.__post_init__()\n" if hasattr(kind, "__post_init__") else ""
    source = f"def __init__(self, {', '.join(names)}):\n    d = self.__dict__\n{stores}{post}"
    namespace: Dict[str, Any] = {}
    exec(source, dict(defaults), namespace)   # the source holds only the class's own field names
    init = namespace["__init__"]
    if _parameters(init) != _parameters(kind.__init__):
        raise TypeError(f"{kind.__name__}'s __init__ takes parameters quick_init cannot reproduce")
    init.__qualname__ = f"{kind.__qualname__}.__init__"
    init.__module__ = kind.__module__
    init.__doc__ = kind.__init__.__doc__
    kind.__init__ = init
    return cls


def _parameters(function: Any) -> List[Any]:
    """Each parameter's name, kind and default (annotations aside)."""
    return [(p.name, p.kind, p.default) for p in inspect.signature(function).parameters.values()]
