"""The README and docs/ tell the truth: the two set-up commands, the quickstart's code (run here, plain and safe),
the generated configuration page, links, and what CI runs."""
from __future__ import annotations

import configparser
import fnmatch
import importlib.util
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any, Dict, Iterator, List

import pytest

from kf_plugin.config import SETTINGS, settings_markdown
from kf_plugin.testing import PushSigner, WeChatTestClient, message_xml

from .conftest import AES_KEY, APPID, TOKEN
from .test_webhook_server import DOCUMENTED

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
DOCS = ROOT / "docs"
CONFIGURATION = (DOCS / "configuration.md").read_text(encoding="utf-8")
USER = "oReadmeUser0000000000000001"


def setup_commands():
    section = README.split("## Set-up", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```sh\n(.+?)\n```", section, re.S)


def test_readme_has_exactly_two_setup_commands():
    demo, tests = setup_commands()
    assert "example_app --demo" in demo and "pytest" in tests


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert setup_commands()[1] in ci.splitlines()


CHECKS = [".venv/bin/ruff check kf_plugin", ".venv/bin/mypy kf_plugin"]


def test_ci_lints_and_type_checks_before_the_tests():
    lines = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    tests_at = lines.index(setup_commands()[1])
    for check in CHECKS:
        assert check in lines[:tests_at], f".ci/run does not run {check!r} before the tests"


def test_the_dev_extra_installs_the_checkers():
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg", encoding="utf-8")
    dev = {re.split(r"[<>=!;\[ ]", line, maxsplit=1)[0] for line in cfg["options.extras_require"]["dev"].split()}
    assert {"mypy", "ruff", "types-PyYAML", "types-requests"} <= dev
    assert "types-redis" not in dev, "redis-py ships its own types"


@pytest.mark.parametrize("check", CHECKS)
def test_the_package_passes_the_ci_checks(check: str):
    tool, *args = check.split()
    executable = Path(sys.executable).with_name(Path(tool).name)
    assert executable.exists(), f"{executable.name} is missing: pip install -e '.[dev]'"
    done = subprocess.run([str(executable), *args], cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, f"{check} failed:\n{done.stdout}{done.stderr}"


# -- the configuration page ---------------------------------------------------------------------------------------

def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("generate_configuration", DOCS / "generate_configuration.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_configuration_page_is_generated_from_settings():
    assert _generator().generated_part(CONFIGURATION) == settings_markdown(), (
        "docs/configuration.md differs from kf_plugin/config.py: run python docs/generate_configuration.py")


def test_configuration_generator_rewrites_only_the_table():
    generator = _generator()
    stale = CONFIGURATION.replace(SETTINGS["KF_URL"].help, "an old description")
    assert stale != CONFIGURATION
    assert generator.with_table(stale, settings_markdown()) == CONFIGURATION


def test_configuration_page_lists_every_setting_with_its_default():
    for name, setting in SETTINGS.items():
        row = next((line for line in CONFIGURATION.splitlines() if line.startswith(f"| `{name}` |")), None)
        assert row is not None, f"{name} is missing from docs/configuration.md"
        if name == "KF_TOKEN":
            default = "— (required)"
        elif setting.default is None:
            default = "—"
        else:
            default = f"`{setting.default:g}`" if isinstance(setting.default, float) else f"`{setting.default}`"
        assert f"| {default} |" in row, row
        assert setting.help in row, f"docs/configuration.md's description of {name} differs from config.py"


# -- links, figures, install ----------------------------------------------------------------------------------------

def _pages() -> Iterator[Path]:
    yield ROOT / "README.md"
    yield from sorted(DOCS.glob("*.md"))


@pytest.mark.parametrize("page", list(_pages()), ids=lambda page: page.name)
def test_relative_links_lead_to_files(page: Path):
    for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", page.read_text(encoding="utf-8")):
        if "://" not in target:
            assert (page.parent / target).exists(), f"{page.name} links to {target}, which does not exist"


def test_the_readme_links_every_docs_page():
    for page in DOCS.glob("*.md"):
        assert f"(docs/{page.name})" in README, f"the README does not link docs/{page.name}"


def test_measured_figures_live_only_in_bench_results():
    figure = re.compile(r"µs|req/s|[0-9] ?(MiB|MB/min|ms\b)")
    places = [*_pages(), *(ROOT / "kf_plugin").rglob("*.py")]
    found = [f"{path.relative_to(ROOT)}:{n}" for path in places
             for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1) if figure.search(line)]
    assert not found, f"measured figures outside bench/RESULTS.md: {found}"


def test_code_and_docs_cite_nothing_outside_the_repository():
    outside = re.compile(r"PROTOCOL|§|\.\./shared|/work/")
    places = [*_pages(), *(ROOT / "kf_plugin").rglob("*.py")]
    found = [f"{path.relative_to(ROOT)}:{n}" for path in places
             for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1) if outside.search(line)]
    assert not found, f"citations of documents users cannot see: {found}"


def test_the_readme_installs_from_a_checkout_and_runs_the_example_app_there():
    assert "pip install kf-plugin" not in README
    assert "pip install /path/to/kf_plugin" in README
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg", encoding="utf-8")
    shipped = cfg["options.packages.find"]["include"].replace(",", " ").split()
    assert not any(fnmatch.fnmatch("example_app", pattern) for pattern in shipped)
    assert "From a checkout, `python -m example_app`" in README, "the wheel does not ship example_app"


def test_the_deployment_page_shows_the_command_the_slow_client_test_runs():
    command = next(line for line in (DOCS / "deployment.md").read_text(encoding="utf-8").splitlines()
                   if line.startswith("gunicorn "))
    assert " ".join(DOCUMENTED) in command


# -- the quickstart, run ------------------------------------------------------------------------------------------

def readme_block(heading: str, language: str) -> str:
    """The one ``language`` code block of the README section whose heading starts with ``heading``."""
    section = re.split(r"\n#{2,3} ", README.split(f"\n{heading}", 1)[1], maxsplit=1)[0]
    blocks = re.findall(rf"```{language}\n(.+?)```", section, re.S)
    assert len(blocks) == 1, f"{heading} should hold one {language} block, not {len(blocks)}"
    return blocks[0]


@pytest.fixture(params=["plain", "safe"])
def mode(request: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str:
    """The environment the quickstart reads, in the directory holding its rules.yaml."""
    (tmp_path / "rules.yaml").write_text(readme_block("## Quickstart", "yaml"), encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("KF_TOKEN", TOKEN)
    for name in ("KF_SECRET", "KF_APPID", "KF_ENCODING_AES_KEY"):
        monkeypatch.delenv(name, raising=False)
    if request.param == "safe":
        monkeypatch.setenv("KF_APPID", APPID)
        monkeypatch.setenv("KF_ENCODING_AES_KEY", AES_KEY)
    return request.param


def run_snippets(*headings: str) -> Dict[str, Any]:
    namespace: Dict[str, Any] = {"__name__": "readme_quickstart"}
    for heading in headings:
        exec(compile(readme_block(heading, "python"), f"README {heading}", "exec"), namespace)
    return namespace


def stop(*plugins: Any) -> None:
    for plugin in plugins:
        plugin.shutdown()


def signer_for(mode: str) -> PushSigner:
    return PushSigner(TOKEN, AES_KEY, APPID) if mode == "safe" else PushSigner(TOKEN)


def verifies_the_url(client: WeChatTestClient, signer: PushSigner) -> List[Any]:
    good = client.client.get("/wechat", query_string=signer.verification("echo-42"))
    forged = client.client.get("/wechat", query_string={**signer.verification(), "signature": "0" * 40})
    return [good.status_code, good.get_data(as_text=True), forged.status_code]


def test_quickstart_a_own_view(mode: str):
    namespace = run_snippets("### (a)")
    signer = signer_for(mode)
    client = WeChatTestClient(namespace["app"], signer=signer)
    try:
        assert verifies_the_url(client, signer) == [200, "echo-42", 403]
        assert client.send_text("转人工", sender=USER).message_type == "transfer_customer_service"
        assert client.send_event("CLICK", "CONTACT_VIP").kf_account == "vip1@gh_example"
        assert client.send_text("随便说说").content == "收到"                 # my_bot
        assert client.send_event("VIEW", "https://example.com").body == "success"
        assert namespace["kf"].window.status(USER).known                     # the table: kf.handle records
        if mode == "safe":
            assert client.send(message_xml(text="转人工"), encrypt=False).status == 403
    finally:
        stop(namespace["kf"])


def test_quickstart_b_our_router(mode: str):
    namespace = run_snippets("### (a)", "### (b)")
    signer = signer_for(mode)
    client = WeChatTestClient(namespace["app"], signer=signer)
    try:
        assert verifies_the_url(client, signer) == [200, "echo-42", 403]
        assert client.send_text("你好").content == "你好！"                   # the router's own handler
        assert client.send_text("转人工", sender=USER).message_type == "transfer_customer_service"
        assert client.send_event("CLICK", "CONTACT_VIP").kf_account == "vip1@gh_example"
        assert client.send_text("随便说说").body == "success"
        assert not namespace["kf"].window.status(USER).known                 # the table: register records nothing
    finally:
        stop(namespace["kf"])


def test_quickstart_c_plugin_owns_the_endpoint(mode: str):
    namespace = run_snippets("### (c)")
    app = namespace["app"]
    client = WeChatTestClient(app)
    try:
        assert (app.config["KF_ENCODING_AES_KEY"] is not None) == (mode == "safe")
        assert verifies_the_url(client, client.signer) == [200, "echo-42", 403]
        assert client.send_text("你好").content == "你好！"
        assert client.send_text("转人工", sender=USER).message_type == "transfer_customer_service"
        assert client.send_event("CLICK", "CONTACT_VIP").kf_account == "vip1@gh_example"
        assert client.send_text("随便说说").body == "success"
        assert namespace["kf"].window.status(USER).known
    finally:
        stop(namespace["kf"])
