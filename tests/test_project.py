"""The README tells the truth: its two set-up commands, the settings table, and what CI runs."""
import re
from pathlib import Path

from kf_plugin.config import SETTINGS

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def setup_commands():
    section = README.split("## Set-up", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```sh\n(.+?)\n```", section, re.S)


def test_readme_has_exactly_two_setup_commands():
    demo, tests = setup_commands()
    assert "example_app --demo" in demo and "pytest" in tests


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert setup_commands()[1] in ci.splitlines()


def test_readme_lists_every_setting_with_its_default():
    for name, setting in SETTINGS.items():
        row = next((line for line in README.splitlines() if line.startswith(f"| `{name}` |")), None)
        assert row is not None, f"{name} is missing from the README's configuration table"
        if name == "KF_TOKEN":
            default = "— (required)"
        elif setting.default is None:
            default = "—"
        else:
            default = f"`{setting.default:g}`" if isinstance(setting.default, float) else f"`{setting.default}`"
        assert f"| {default} |" in row, row
        assert setting.help in row, f"the README's description of {name} differs from config.py"
