"""The shape of the ``kf_plugin.cli`` package: the group in ``__init__``, one module per command family,
the helpers they share public in ``common``, and imports that only run one way."""
from __future__ import annotations

import ast
from pathlib import Path
from typing import Dict, List, Set

import click
import pytest

import kf_plugin.cli
from kf_plugin.cli import cli

PACKAGE = Path(kf_plugin.cli.__file__).parent
FAMILIES = ["rule_commands", "reload_commands", "service_commands", "handoff_commands", "token_commands",
            "sandbox_command", "sandbox_control_commands", "wecom_commands"]


def _tree(module: str) -> ast.Module:
    return ast.parse((PACKAGE / f"{module}.py").read_text(encoding="utf-8"))


def _imports_from_package(module: str) -> Dict[str, Set[str]]:
    """What ``module`` imports from ``kf_plugin`` (relative imports): full module name → the names taken."""
    taken: Dict[str, Set[str]] = {}
    for node in ast.walk(_tree(module)):
        if isinstance(node, ast.ImportFrom) and node.level:
            inside_cli = node.level == 1  # ``.x`` is kf_plugin.cli.x, from __init__ as from any module beside it
            name = ("kf_plugin.cli." if inside_cli else "kf_plugin.") + (node.module or "")
            taken.setdefault(name.rstrip("."), set()).update(alias.name for alias in node.names)
    return taken


def _in_cli(module: str) -> bool:
    return module == "kf_plugin.cli" or module.startswith("kf_plugin.cli.")


def test_cli_is_a_package_of_the_group_and_its_families():
    assert Path(kf_plugin.cli.__file__).name == "__init__.py"
    assert sorted(p.stem for p in PACKAGE.glob("*.py")) == sorted(["__init__", "common", *FAMILIES])
    assert set(cli.commands) == {"check", "route", "push", "reload", "rules", "accounts", "sessions", "send", "typing", "records",
                                 "window", "handoffs", "token", "sandbox", "wecom"}


@pytest.mark.parametrize("family", FAMILIES)
def test_a_family_imports_only_common_from_the_cli(family):
    inside = {module for module in _imports_from_package(family) if _in_cli(module)}
    assert inside <= {"kf_plugin.cli.common"}, f"{family} imports {inside}: the group in __init__ imports them"


def test_common_imports_nothing_from_the_cli():
    assert not [module for module in _imports_from_package("common") if _in_cli(module)]


@pytest.mark.parametrize("module", ["__init__", "common", *FAMILIES])
def test_no_private_name_crosses_a_module(module):
    private = {f"{source}.{name}" for source, names in _imports_from_package(module).items()
               for name in names if name.startswith("_")}
    assert not private


@pytest.mark.parametrize("module", ["__init__", "common", *FAMILIES])
def test_no_lookup_by_a_name_in_a_string(module):
    """Commands and attributes are named in the code, not reached by getattr or renamed through __name__."""
    found: List[str] = []
    for node in ast.walk(_tree(module)):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("getattr", "setattr"):
            found.append(f"{node.func.id} on line {node.lineno}")
        if isinstance(node, ast.Attribute) and node.attr == "__name__" and isinstance(node.ctx, ast.Store):
            found.append(f"__name__ assigned on line {node.lineno}")
    assert not found


@pytest.mark.parametrize("module", ["__init__", "common", *FAMILIES])
def test_modules_and_functions_stay_short(module):
    source = (PACKAGE / f"{module}.py").read_text(encoding="utf-8")
    assert len(source.splitlines()) <= 400
    long = [(node.name, node.end_lineno - node.lineno + 1) for node in ast.walk(ast.parse(source))
            if isinstance(node, ast.FunctionDef) and node.end_lineno - node.lineno + 1 > 40]
    assert not long


def test_every_command_has_its_help():
    def walk(command: click.Command, path: str) -> List[str]:
        missing = [] if command.help else [path]
        if isinstance(command, click.Group):
            for name, sub in command.commands.items():
                missing += walk(sub, f"{path} {name}")
        return missing

    assert walk(cli, "kf-plugin") == []
