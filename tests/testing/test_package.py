"""kf_plugin.testing: what importing it loads, its lazy ``Sandbox``, and the deprecated ``kf_plugin.sandbox``."""
from __future__ import annotations

import configparser
import json
import subprocess
import sys
from pathlib import Path
from typing import List

import pytest
from setuptools import find_packages

import kf_plugin.testing
import kf_plugin.testing.sandbox

SANDBOX_SERVER = "kf_plugin.testing.sandbox.server"
ROOT = Path(__file__).resolve().parents[2]


def modules_loaded_by(code: str) -> List[str]:
    """The kf_plugin modules a fresh interpreter holds after running ``code``."""
    report = "import json, sys; print(json.dumps(sorted(m for m in sys.modules if m.startswith('kf_plugin'))))"
    done = subprocess.run([sys.executable, "-c", f"{code}\n{report}"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.mark.parametrize("code", [
    "import kf_plugin",
    "import kf_plugin.webhook, kf_plugin.extension",
    "import kf_plugin.cli",
    "from kf_plugin.testing import Answer, PushSigner, WeChatTestClient, message_xml",
])
def test_the_plugin_and_the_push_client_do_not_load_the_sandbox(code: str) -> None:
    loaded = modules_loaded_by(code)
    assert "kf_plugin" in loaded
    assert SANDBOX_SERVER not in loaded
    assert [name for name in loaded if name.startswith(("kf_plugin.sandbox", "kf_plugin.testing.sandbox"))] == []


def test_the_push_client_is_what_the_testing_package_exports() -> None:
    loaded = modules_loaded_by("from kf_plugin.testing import WeChatTestClient")
    assert "kf_plugin.testing.client" in loaded


def test_sandbox_is_loaded_from_the_testing_package_on_first_use() -> None:
    loaded = modules_loaded_by("from kf_plugin.testing import WeChatTestClient, Sandbox")
    assert SANDBOX_SERVER in loaded
    from kf_plugin.testing import Sandbox
    assert Sandbox is kf_plugin.testing.sandbox.Sandbox
    assert "Sandbox" in dir(kf_plugin.testing)


def test_an_unknown_name_in_the_testing_package_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="'kf_plugin.testing' has no attribute 'Sandbx'"):
        kf_plugin.testing.Sandbx


def test_the_old_sandbox_path_warns_and_names_the_new_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(sys.modules, "kf_plugin.sandbox", raising=False)  # so the import runs (and warns) again
    with pytest.warns(DeprecationWarning, match=r"import from kf_plugin\.testing\.sandbox") as caught:
        from kf_plugin.sandbox import DEFAULT_QUOTAS, ApiError, Call, Faults, Sandbox, SandboxServer
    assert caught[0].filename == __file__  # the warning points at the importing line, not at kf_plugin
    new = kf_plugin.testing.sandbox
    assert (Sandbox, SandboxServer, ApiError, Call, Faults, DEFAULT_QUOTAS) == (
        new.Sandbox, new.SandboxServer, new.ApiError, new.Call, new.Faults, new.DEFAULT_QUOTAS)


def test_a_script_importing_the_old_sandbox_path_shows_the_warning() -> None:
    done = subprocess.run([sys.executable, "-c", "from kf_plugin.sandbox import Sandbox; print(Sandbox.__module__)"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "kf_plugin.testing.sandbox.sandbox"
    assert "DeprecationWarning: kf_plugin.sandbox is deprecated" in done.stderr


def test_the_distribution_ships_every_folder_of_the_package() -> None:
    """setup.cfg finds packages by their ``__init__.py``: a folder of modules without one would be left out."""
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg", encoding="utf-8")
    include = [pattern.strip() for pattern in config["options.packages.find"]["include"].split(",")]
    shipped = set(find_packages(str(ROOT), include=include))
    folders = {".".join(path.parent.relative_to(ROOT).parts) for path in (ROOT / "kf_plugin").rglob("*.py")}
    assert {"kf_plugin.testing", "kf_plugin.testing.sandbox"} <= folders
    assert folders == shipped
