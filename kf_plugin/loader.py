"""YAML rule files → :class:`~kf_plugin.rules.RuleSet`.

The loader only builds rules; it never matches. Validation is strict and
reports every problem at once, each with the file, the line and the rule::

    rules.yaml:7: rule 'complaint': regex: invalid regular expression: missing ), unterminated subpattern at position 0
"""
from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Annotated, Any, Dict, List, Literal, Optional, Tuple, Union

import yaml
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, ValidationError, field_validator
from wechatpy.events import EVENT_TYPES
from wechatpy.messages import MESSAGE_TYPES

from .errors import RuleFileError, RuleProblem
from .filters import MATCH_MODES
from .rules import Rule, RuleSet

__all__ = ["load_rules", "load_rules_text", "SUPPORTED_VERSIONS", "KNOWN_EVENTS", "KNOWN_MSG_TYPES"]

SUPPORTED_VERSIONS = (1,)
KNOWN_MSG_TYPES = frozenset(MESSAGE_TYPES) | {"event"}
KNOWN_EVENTS = frozenset(EVENT_TYPES) | {
    "subscribe_msg_popup_event", "subscribe_msg_change_event", "subscribe_msg_sent_event",
}

Path_ = Tuple[Union[str, int], ...]


def _listify(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be blank")
    return value


def _known(known: frozenset, what: str) -> Any:
    def check(item: str) -> str:
        if item.lower() not in known:
            close = difflib.get_close_matches(item.lower(), known, n=1)
            raise ValueError(f"unknown {what} {item!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        return item
    return check


def _non_empty(items: List[str]) -> List[str]:
    if not items:
        raise ValueError("must list at least one entry")
    return items


def _str_list(check: Any) -> Any:
    """A string or a non-empty list of strings, each passing ``check`` (errors point at the entry)."""
    return Annotated[List[Annotated[str, AfterValidator(check)]], BeforeValidator(_listify), AfterValidator(_non_empty)]


Text = Annotated[str, AfterValidator(_not_blank)]


def _valid_regex(value: str) -> str:
    try:
        re.compile(value)
    except re.error as exc:
        raise ValueError(f"invalid regular expression: {exc}") from None
    return value


Pattern = Annotated[str, AfterValidator(_valid_regex)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class _RuleModel(_Model):
    name: Text
    enabled: bool = True
    msg_type: Optional[_str_list(_known(KNOWN_MSG_TYPES, "message type"))] = None
    keywords: Optional[_str_list(_not_blank)] = None
    match: Literal["contains", "exact", "prefix"] = "contains"
    regex: Optional[Pattern] = None
    event: Optional[_str_list(_known(KNOWN_EVENTS, "event"))] = None
    event_key: Optional[Text] = None
    event_key_regex: Optional[Pattern] = None
    users: Optional[_str_list(_not_blank)] = None
    kf_account: Optional[Text] = None
    reply: Optional[Text] = None


class _FileModel(_Model):
    version: int
    fallback_text: Optional[str] = None
    rules: List[Any]

    @field_validator("version")
    @classmethod
    def _supported(cls, value: int) -> int:
        if value not in SUPPORTED_VERSIONS:
            raise ValueError(f"unsupported version {value}; this kf_plugin reads version "
                             f"{', '.join(map(str, SUPPORTED_VERSIONS))}")
        return value


_FIELDS = {"file": set(_FileModel.model_fields), "rule": set(_RuleModel.model_fields)}


def _line_map(node: yaml.Node, path: Path_, lines: Dict[Path_, int],
              problems: List[Tuple[int, str, Path_]]) -> None:
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        seen: Dict[Any, int] = {}
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else repr(key_node)
            line = key_node.start_mark.line + 1
            if key in seen:
                problems.append((line, f"duplicate key {key!r} (first at line {seen[key]})", path))
            seen.setdefault(key, line)
            lines[path + (key, "<key>")] = line
            _line_map(value_node, path + (key,), lines, problems)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _line_map(item, path + (index,), lines, problems)


def _describe(value: Any) -> str:
    if value is None:
        return "empty (null)"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, (int, float)):
        return f"the number {value}"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return f"{type(value).__name__} {value!r}"


def _message(error: Dict[str, Any], section: str, in_list: bool) -> str:
    """Plain words for a pydantic error; ``in_list``: the value at the error's index is a YAML list entry."""
    loc = error["loc"]
    key = next((str(part) for part in reversed(loc) if isinstance(part, str)), "")
    item = f"{key} entry {loc[-1] + 1}" if loc and isinstance(loc[-1], int) and in_list else key
    kind = error["type"]
    value = error.get("input")
    if kind == "extra_forbidden":
        close = difflib.get_close_matches(key, _FIELDS[section], n=1)
        return f"unknown key {key!r}" + (f" (did you mean {close[0]!r}?)" if close else "")
    if kind == "missing":
        return f"missing required key {key!r}"
    if kind == "string_type":
        hint = ""
        if isinstance(value, (bool, int, float)):
            hint = " — quote it, YAML reads it unquoted as a " + ("boolean" if isinstance(value, bool) else "number")
        return f"{item} must be a string, not {_describe(value)}{hint}"
    if kind == "list_type":
        if key == "rules":
            return f"rules must be a list of rules, not {_describe(value)}"
        return f"{key} must be a string or a list of strings, not {_describe(value)}"
    if kind == "bool_type":
        return f"{key} must be true or false, not {_describe(value)}"
    if kind == "int_type":
        return f"{key} must be a whole number, not {_describe(value)}"
    if kind == "literal_error":
        return f"{key} must be one of {', '.join(MATCH_MODES)}, not {_describe(value)}"
    if kind == "model_type" or kind == "dict_type":
        return f"{'each rule' if section == 'rule' else 'the file'} must be a mapping of keys, not {_describe(value)}"
    if kind == "value_error":
        return f"{item}: {error['ctx']['error']}"
    return f"{item}: {error['msg']}"


class _Locator:
    """Turns a data path into a line number and a rule name."""

    def __init__(self, data: Dict[str, Any], lines: Dict[Path_, int]):
        self.data, self.lines = data, lines

    def line(self, path: Path_, key_line: bool = False) -> Optional[int]:
        if key_line and path + ("<key>",) in self.lines:
            return self.lines[path + ("<key>",)]
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return self.lines.get(())

    def in_list(self, path: Path_) -> bool:
        """Whether the value at ``path[:-1]`` is a list in the file (not a string made into one)."""
        value: Any = self.data
        for part in path[:-1]:
            try:
                value = value[part]
            except (KeyError, IndexError, TypeError):
                return False
        return isinstance(value, list)

    def rule_name(self, path: Path_) -> Optional[str]:
        if len(path) >= 2 and path[0] == "rules" and isinstance(path[1], int):
            rules = self.data.get("rules")
            rule = rules[path[1]] if isinstance(rules, list) and path[1] < len(rules) else None
            name = rule.get("name") if isinstance(rule, dict) else None
            return name if isinstance(name, str) and name.strip() else f"#{path[1] + 1}"
        return None


_UNCLOSED = ("while parsing a flow", "while scanning a quoted scalar")


def _syntax_problem(source: str, text: str, exc: yaml.YAMLError) -> RuleProblem:
    """A YAML syntax error, at the line where the broken construct starts (an unclosed bracket or quote)."""
    last_line = max(1, text.count("\n") + (0 if text.endswith("\n") else 1))

    def line_of(mark: Any) -> Optional[int]:
        return min(mark.line + 1, last_line) if mark is not None else None

    context, context_mark = getattr(exc, "context", None), getattr(exc, "context_mark", None)
    problem, problem_mark = getattr(exc, "problem", None), getattr(exc, "problem_mark", None)
    if not problem:
        return RuleProblem(source, line_of(context_mark), f"not valid YAML: {context or exc}")
    if context and context.startswith(_UNCLOSED):
        # The error shows where the parser gave up; the mistake is where the bracket or quote opened.
        return RuleProblem(source, line_of(context_mark),
                           f"not valid YAML: {context} that is never closed: {problem} (line {line_of(problem_mark)})")
    said = f"{context}: {problem}" if context and not context.startswith("while") else problem
    return RuleProblem(source, line_of(problem_mark), f"not valid YAML: {said}")


def load_rules_text(text: str, source: str = "<string>") -> RuleSet:
    """Build a :class:`RuleSet` from YAML text; ``source`` names it in errors.

    :raises RuleFileError: listing every problem, each with its line and rule.
    """
    def fail(line: Optional[int], message: str) -> RuleFileError:
        return RuleFileError([RuleProblem(source, line, message)])

    loader = yaml.SafeLoader(text)
    try:
        root = loader.get_single_node()
        if root is not None and not isinstance(root, yaml.MappingNode):
            raise fail(root.start_mark.line + 1, "the top level must be a mapping with 'version' and 'rules'")
        data = loader.construct_document(root) if root is not None else None
    except yaml.YAMLError as exc:
        raise RuleFileError([_syntax_problem(source, text, exc)]) from None
    finally:
        loader.dispose()
    if root is None:
        raise fail(None, "the file is empty; expected a mapping with 'version' and 'rules'")
    lines: Dict[Path_, int] = {}
    duplicates: List[Tuple[int, str, Path_]] = []
    _line_map(root, (), lines, duplicates)
    locate = _Locator(data, lines)
    problems = [RuleProblem(source, line, message, locate.rule_name(path)) for line, message, path in duplicates]

    def report(exc: ValidationError, prefix: Path_, section: str) -> None:
        for error in exc.errors():
            path = prefix + tuple(error["loc"])
            line = locate.line(path, key_line=error["type"] == "extra_forbidden")
            problems.append(RuleProblem(source, line, _message(error, section, locate.in_list(path)),
                                        locate.rule_name(path)))

    model: Optional[_FileModel] = None
    try:
        model = _FileModel.model_validate(data)
    except ValidationError as exc:
        report(exc, (), "file")

    rules: List[Rule] = []
    first_seen: Dict[str, int] = {}
    raw_rules = data.get("rules") if isinstance(data.get("rules"), list) else []
    for index, raw in enumerate(raw_rules):
        try:
            fields = _RuleModel.model_validate(raw).model_dump(exclude_unset=True)
        except ValidationError as exc:
            report(exc, ("rules", index), "rule")
            fields = None
        name = raw.get("name") if isinstance(raw, dict) else None
        if isinstance(name, str):
            line = locate.line(("rules", index, "name"))
            if name in first_seen:
                problems.append(RuleProblem(source, line, f"duplicate rule name (first used at line {first_seen[name]})",
                                            name))
            first_seen.setdefault(name, line or 0)
        if fields is None:
            continue
        fields.pop("name")
        try:
            rules.append(Rule.build(name, origin=f"{source}:{locate.line(('rules', index))}", **fields))
        except ValueError as exc:
            problems.append(RuleProblem(source, locate.line(("rules", index)), str(exc), name))

    if problems:
        problems.sort(key=lambda p: p.line or 0)
        raise RuleFileError(problems)
    assert model is not None
    return RuleSet(tuple(rules), fallback_text=model.fallback_text, source=source)


def load_rules(path: Union[str, Path]) -> RuleSet:
    """Read and validate the rule file at ``path``.

    :raises RuleFileError: the file cannot be read or is invalid; every problem
        is listed with its line and rule.
    """
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise RuleFileError([RuleProblem(source, None, f"cannot read the file: {exc.strerror or exc}")]) from None
    except UnicodeDecodeError as exc:
        raise RuleFileError([RuleProblem(source, None, f"not UTF-8 text: {exc.reason} at byte {exc.start}")]) from None
    return load_rules_text(text, source)
