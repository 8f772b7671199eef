"""YAML rule files → :class:`~kf_plugin.rules.RuleSet`.

The loader only builds rules; it never matches. Validation is strict and
reports every problem at once, each with the file, the line and the rule::

    rules.yaml:7: rule 'complaint': regex: invalid regular expression: missing ), unterminated subpattern at position 0
"""
from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Tuple, Union

import yaml
from pydantic import ValidationError
from pydantic_core import ErrorDetails

from .errors import RuleFileError, RuleProblem
from .folding import FULL, Folding
from .queueing import QueuePolicy
from .rules import Rule, RuleSet
from .schema import UNION_TAGS, FileModel, RuleModel, fields_at
from .wecom.texts import WeComTexts

__all__ = ["load_rules", "load_rules_bytes", "load_rules_text", "read_rule_bytes"]

Path_ = Tuple[Union[str, int], ...]


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


def _hint(word: Any, choices: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the choice closest to ``word``, or nothing."""
    close = difflib.get_close_matches(word, list(choices), n=1) if isinstance(word, str) else []
    return f" (did you mean {close[0]!r}?)" if close else ""


def _loc(error: ErrorDetails) -> Path_:
    """Where in the file the error is: its location without the names of a value's forms (:data:`UNION_TAGS`)."""
    return tuple(part for part in error["loc"] if part not in UNION_TAGS)


def _message(error: ErrorDetails, path: Path_, in_list: bool) -> str:
    """Plain words for a pydantic error; ``in_list``: the value at the error's index is a YAML list entry."""
    loc = _loc(error)
    if len(loc) >= 3 and loc[-1] == "[key]":   # a mapping's key, not its value (welcome_text's scenes)
        return _key_message(error, str(loc[-3]))
    key = next((str(part) for part in reversed(loc) if isinstance(part, str)), "")
    item = f"{key} entry {loc[-1] + 1}" if loc and isinstance(loc[-1], int) and in_list else key
    kind = error["type"]
    value = error.get("input")
    if kind == "extra_forbidden":
        return f"unknown key {key!r}{_hint(key, fields_at(path[:-1]))}"
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
        expected = error["ctx"]["expected"]   # "'quiet' or 'bot'"
        choices = re.findall(r"'([^']*)'", expected)
        return f"{key} must be {expected}, not {_describe(value)}{_hint(value, choices)}"
    if kind == "model_type" or kind == "dict_type":
        what = "each rule" if len(path) == 2 and path[0] == "rules" else (key or "the file")
        return f"{what} must be a mapping of keys, not {_describe(value)}"
    if kind == "value_error":
        return f"{item}: {error['ctx']['error']}"
    if kind == "welcome_form":
        return f"{item} {error['msg']}, not {_describe(value)}"
    return f"{item}: {error['msg']}"


def _key_message(error: ErrorDetails, mapping: str) -> str:
    if error["type"] == "value_error":
        return f"{mapping}: {error['ctx']['error']}"
    return f"{mapping}: each key must be a string, not {_describe(error.get('input'))} — quote it"


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
    root, data = _read_yaml(text, source)
    lines: Dict[Path_, int] = {}
    duplicates: List[Tuple[int, str, Path_]] = []
    _line_map(root, (), lines, duplicates)
    problems = _Problems(source, _Locator(data, lines))
    for line, message, path in duplicates:
        problems.add(line, message, path)
    model: Optional[FileModel] = None
    try:
        model = FileModel.model_validate(data)
    except ValidationError as exc:
        problems.report(exc, ())
    folding = _folding(data)
    rules = _build_rules(data, problems, folding)
    _check_triggers(rules, data, problems)
    problems.raise_any()
    assert model is not None
    return RuleSet(tuple(rules), fallback_text=model.fallback_text, source=source, handoff_text=model.handoff_text,
                   quotas=model.quotas.to_quotas() if model.quotas else {}, unknown_users=model.unknown_users,
                   business_hours=model.business_hours.to_hours() if model.business_hours else None,
                   queue=model.queue.to_policy(folding) if model.queue else QueuePolicy(folding=folding),
                   context=model.to_context(), folding=folding,
                   wecom=model.wecom.to_texts() if model.wecom else WeComTexts())


def _folding(data: Dict[str, Any]) -> Folding:
    """The file's ``folding`` setting; every folding when it is invalid (the file's validation reports that)."""
    value = data.get("folding", FULL)
    try:
        return Folding.of([value] if isinstance(value, str) else value)
    except (TypeError, ValueError):
        return FULL


def _read_yaml(text: str, source: str) -> Tuple[yaml.MappingNode, Dict[str, Any]]:
    """The document's root node (for line numbers) and its data.

    :raises RuleFileError: not YAML, empty, or not a mapping at the top.
    """
    def fail(line: Optional[int], message: str) -> RuleFileError:
        return RuleFileError([RuleProblem(source, line, message)])

    loader = yaml.SafeLoader(text)
    try:
        root = loader.get_single_node()
        if root is None:
            raise fail(None, "the file is empty; expected a mapping with 'version' and 'rules'")
        data = loader.construct_document(root) if isinstance(root, yaml.MappingNode) else None
    except yaml.YAMLError as exc:
        raise RuleFileError([_syntax_problem(source, text, exc)]) from None
    finally:
        loader.dispose()
    # A tagged mapping (``!!set {a, b}``) is a mapping node that builds no dict.
    if not isinstance(root, yaml.MappingNode) or not isinstance(data, dict):
        raise fail(root.start_mark.line + 1, "the top level must be a mapping with 'version' and 'rules'")
    return root, data


class _Problems:
    """The problems found in one file, each placed at its line and rule."""

    def __init__(self, source: str, locate: "_Locator"):
        self.source = source
        self.locate = locate
        self.found: List[RuleProblem] = []

    def add(self, line: Optional[int], message: str, path: Path_, rule: Optional[str] = None) -> None:
        self.found.append(RuleProblem(self.source, line, message, rule or self.locate.rule_name(path)))

    def report(self, exc: ValidationError, prefix: Path_) -> None:
        """pydantic's errors, each mapped back to the line of the key it is about."""
        for error in exc.errors():
            path = prefix + _loc(error)
            if error["type"] == "missing":  # at the key that should hold it
                line = self.locate.line(path[:-1], key_line=True)
            elif path[-1:] == ("[key]",):   # the file's keys are strings however YAML typed them
                line = self.locate.line(path[:-2] + (str(path[-2]),), key_line=True)
            else:
                line = self.locate.line(path, key_line=error["type"] == "extra_forbidden")
            self.add(line, _message(error, path, self.locate.in_list(path)), path)

    def raise_any(self) -> None:
        """:raises RuleFileError: every problem found, in line order."""
        if self.found:
            raise RuleFileError(sorted(self.found, key=lambda p: p.line or 0))


def _build_rules(data: Dict[str, Any], problems: _Problems, folding: Folding) -> List[Rule]:
    """The file's rules that are valid, their keywords folded by ``folding``; the problems of the others (and
    duplicate names) go to ``problems``."""
    locate, source = problems.locate, problems.source
    rules: List[Rule] = []
    first_seen: Dict[str, int] = {}
    raw_rules = data.get("rules") if isinstance(data.get("rules"), list) else []
    for index, raw in enumerate(raw_rules or ()):
        try:
            fields: Optional[Dict[str, Any]] = RuleModel.model_validate(raw).model_dump(exclude_unset=True)
        except ValidationError as exc:
            problems.report(exc, ("rules", index))
            fields = None
        name = raw.get("name") if isinstance(raw, dict) else None
        if isinstance(name, str):
            line = locate.line(("rules", index, "name"))
            if name in first_seen:
                problems.add(line, f"duplicate rule name (first used at line {first_seen[name]})", (), name)
            first_seen.setdefault(name, line or 0)
        if fields is None:
            continue
        valid_name: str = fields.pop("name")
        try:
            rules.append(Rule.build(valid_name, origin=f"{source}:{locate.line(('rules', index))}", folding=folding,
                                    **fields))
        except ValueError as exc:
            problems.add(locate.line(("rules", index)), str(exc), (), name)
    return rules


def _check_triggers(rules: List[Rule], data: Dict[str, Any], problems: _Problems) -> None:
    """Two enabled rules acting after the same number of unanswered messages: the second is a problem."""
    raw_rules = data.get("rules")
    index_of = {raw["name"]: index for index, raw in enumerate(raw_rules if isinstance(raw_rules, list) else ())
                if isinstance(raw, dict) and isinstance(raw.get("name"), str)}
    first: Dict[int, str] = {}
    for rule in rules:
        count = rule.after_unanswered
        if count is None or not rule.enabled:
            continue
        if count in first:
            line = problems.locate.line(("rules", index_of[rule.name], "after_unanswered"))
            problems.add(line, f"rule {first[count]!r} already acts after {count} unanswered messages; "
                               "only one rule can", (), rule.name)
        first.setdefault(count, rule.name)


def load_rules(path: Union[str, Path]) -> RuleSet:
    """Read and validate the rule file at ``path``.

    :raises RuleFileError: the file cannot be read or is invalid; every problem
        is listed with its line and rule.
    """
    return load_rules_bytes(read_rule_bytes(path), str(path))


def read_rule_bytes(path: Union[str, Path]) -> bytes:
    """The bytes of the rule file at ``path``.

    :raises RuleFileError: the file cannot be read.
    """
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise RuleFileError([RuleProblem(str(path), None, f"cannot read the file: {exc.strerror or exc}")]) from None


def load_rules_bytes(data: bytes, source: str) -> RuleSet:
    """Validate a rule file's bytes (UTF-8 YAML); ``source`` names the file in the problems.

    :raises RuleFileError: the bytes are not UTF-8 text, or the file is invalid.
    """
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RuleFileError([RuleProblem(source, None, f"not UTF-8 text: {exc.reason} at byte {exc.start}")]) from None
    return load_rules_text(text, source)
