"""KfPlugin: the three ways into a bot, configuration, and registration."""
import pytest
from flask import Flask, request
from wechatpy import parse_message

from kf_plugin import ConfigError, Keyword, KfError, KfPlugin, MessageRouter, Rule, RuleFileError
from kf_plugin.replies import render_reply
from kf_plugin.testing import WeChatTestClient, message_xml
from kf_plugin.webhook import parse_push

from .conftest import AES_KEY, APPID, TOKEN


def test_style_a_own_view_calls_handle(rules_file):
    """A bot with its own Flask view asks the plugin for a reply."""
    kf = KfPlugin(rules=rules_file)
    app = Flask("own_view")

    @app.post("/bot")
    def bot():
        message = parse_message(request.get_data())
        reply = kf.handle(message)
        return render_reply(reply) if reply is not None else "success"

    client = app.test_client()
    answer = client.post("/bot", data=message_xml(text="转人工", sender="oU", account="gh_A"))
    assert "transfer_customer_service" in answer.get_data(as_text=True)
    assert "<ToUserName><![CDATA[oU]]></ToUserName>" in answer.get_data(as_text=True)
    assert client.post("/bot", data=message_xml(text="hello")).get_data(as_text=True) == "success"
    assert kf.handle(parse_push(message_xml(event="CLICK", key="CONTACT_VIP"))).kf_account == "vip1@gh_example"


def test_style_b_register_puts_rules_before_the_bots_handlers(rules_file):
    router = MessageRouter()

    @router.on(Keyword("人工"))
    def bot_would_answer(message):
        return "the bot's own answer"

    @router.on(Keyword("hello"))
    def greet(message):
        return "hi"

    KfPlugin(rules=rules_file).register(router)
    assert router.dispatch(parse_push(message_xml(text="人工"))).type == "transfer_customer_service"
    assert router.dispatch(parse_push(message_xml(text="hello"))) == "hi"


def test_style_c_init_app_owns_the_endpoint(make_app):
    router = MessageRouter()
    router.add(Keyword("hello"), lambda m: "hi")
    client = WeChatTestClient(make_app(router=router))
    assert client.send_text("转人工", sender="oWaiting").message_type == "transfer_customer_service"
    assert client.send_text("hello", sender="oWaiting").body == "success"   # queued: the bot stays quiet
    assert client.send_text("hello").content == "hi"
    assert client.send_text("nothing here").body == "success"


def test_two_phase_init_and_extension_state(rules_file):
    kf = KfPlugin(rules=rules_file)
    app = Flask("two_phase")
    app.config.update(KF_TOKEN=TOKEN)
    kf.init_app(app)
    assert app.extensions["kf_plugin"].plugin is kf
    assert not hasattr(kf, "app")
    assert app.config["KF_URL"] == "/wechat" and app.config["KF_MAX_CLOCK_SKEW"] == 300
    assert WeChatTestClient(app).send_text("人工").message_type == "transfer_customer_service"


def test_one_plugin_serves_two_apps(rules_file):
    kf = KfPlugin(rules=rules_file)
    apps = [Flask(f"app{i}") for i in range(2)]
    for i, app in enumerate(apps):
        app.config.update(KF_TOKEN=f"token-{i}")
        kf.init_app(app)
    for app in apps:
        assert WeChatTestClient(app).send_text("人工").message_type == "transfer_customer_service"


def test_registering_twice_is_refused(make_app):
    app = make_app()
    with pytest.raises(RuntimeError, match="already registered on the app 'kf_test'"):
        KfPlugin(app)


def test_custom_url(make_app):
    app = make_app(KF_URL="/hooks/wx")
    client = WeChatTestClient(app)
    assert client.url == "/hooks/wx"
    assert client.send_text("人工").status == 200
    assert app.test_client().post("/wechat").status_code == 404


@pytest.mark.parametrize("config, message", [
    (dict(KF_TOKEN=None), "KF_TOKEN is not set"),
    (dict(KF_TOKEN=""), "KF_TOKEN is not set"),
    (dict(KF_ENCODING_AES_KEY="short"), "KF_ENCODING_AES_KEY must be the 43 letters and digits"),
    (dict(KF_ENCODING_AES_KEY=AES_KEY[:-1] + "+"), "KF_ENCODING_AES_KEY must be the 43"),
    (dict(KF_ENCODING_AES_KEY=AES_KEY, KF_APPID=None), "KF_APPID is required in safe mode"),
    (dict(KF_ENCODING_AES_KEY=AES_KEY, KF_ENCODING_AES_KEY_PREVIOUS="x"), "KF_ENCODING_AES_KEY_PREVIOUS must be"),
    (dict(KF_MAX_CLOCK_SKEW="soon"), "KF_MAX_CLOCK_SKEW must be a number, not 'soon'"),
    (dict(KF_MAX_BODY=-1), "KF_MAX_BODY must not be negative"),
    (dict(KF_TOKEN_MODE="fast"), "KF_TOKEN_MODE must be stable or classic, not 'fast'"),
])
def test_config_errors_name_the_key(make_app, config, message):
    with pytest.raises(ConfigError, match=message):
        make_app(**config)


def test_invalid_rule_file_fails_at_start_up(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\nrules:\n  - name: x\n", encoding="utf-8")
    app = Flask("bad_rules")
    app.config.update(KF_TOKEN=TOKEN, KF_RULES=str(bad))
    with pytest.raises(RuleFileError, match="bad.yaml:3: rule 'x': a rule needs at least one condition"):
        KfPlugin(app)
    assert "kf_plugin" not in app.extensions


def test_rules_given_in_python_take_precedence_over_kf_rules(make_app):
    app = make_app(plugin_options={"rules": [Rule.build("only", keywords="python", reply="from python")]})
    client = WeChatTestClient(app)
    assert client.send_text("python").content == "from python"
    assert client.send_text("人工").body == "success"


def test_safe_mode_settings_from_config(make_app):
    app = make_app(KF_ENCODING_AES_KEY=AES_KEY, KF_APPID=APPID)
    answer = WeChatTestClient(app).send_text("人工")
    assert "<Encrypt>" in answer.body and answer.message_type == "transfer_customer_service"


def test_flask_kf_command_group_is_registered(make_app):
    result = make_app().test_cli_runner().invoke(args=["kf", "--help"])
    assert result.exit_code == 0 and "check" in result.output and "route" in result.output


# -- one plugin, several apps: each keeps its own API client ------------------------------------------

def _api_app(name, appid, api, kf, **config):
    app = Flask(name)
    app.config.update(KF_TOKEN=TOKEN, KF_APPID=appid, KF_SECRET=api.sandbox.secret, KF_API_BASE_URL=api.url,
                      **config)
    kf.init_app(app)
    return app


def test_each_app_keeps_its_own_api_client_window_and_agents(api, rules_file):
    kf = KfPlugin(rules=rules_file)
    apps = [_api_app("a", "wxAAAAAAAAAAAAAAAA", api, kf), _api_app("b", "wxBBBBBBBBBBBBBBBB", api, kf)]
    services = [app.extensions["kf_plugin"].services for app in apps]
    for app, own in zip(apps, services):
        with app.app_context():
            assert kf.admin.client.appid == app.config["KF_APPID"]
            assert kf.window is own.window and kf.agents is own.agents
    assert services[0].admin is not services[1].admin and services[0].shared is not services[1].shared
    with pytest.raises(KfError, match="serves 2 apps: use it inside one app's context"):
        kf.admin
    kf.shutdown()


def test_a_bots_handler_sees_its_own_apps_api_even_on_the_handler_thread(api, rules_file):
    router = MessageRouter()
    kf = KfPlugin(rules=rules_file, router=router)
    router.add(Keyword("appid"), lambda message: kf.admin.client.appid)   # runs under the deadline, on a pool thread
    apps = [_api_app("a", "wxAAAAAAAAAAAAAAAA", api, kf), _api_app("b", "wxBBBBBBBBBBBBBBBB", api, kf)]
    for app in apps:
        assert WeChatTestClient(app).send_text("appid").content == app.config["KF_APPID"]
    kf.shutdown()


# -- rules that need the WeChat API ------------------------------------------------------------------

@pytest.mark.parametrize("options, named", [
    (dict(require_online=True), "require_online"),
    (dict(handoff="session"), "handoff: session"),
    (dict(notice="稍等"), "notice"),
    (dict(kf_account="a@gh", fallback_to_pool=True), "fallback_to_pool"),
])
def test_a_rule_needing_the_api_without_a_secret_is_refused_at_init_app(options, named):
    app = Flask("no_secret")
    app.config.update(KF_TOKEN=TOKEN, KF_APPID=APPID)
    kf = KfPlugin(rules=[Rule.build("plain", keywords="人工"), Rule.build("online", keywords="在线", **options)])
    with pytest.raises(ConfigError, match=rf"rule 'online' uses {named}, which needs the WeChat API, but "
                                          r"KF_SECRET is not set: set KF_SECRET in the app's config"):
        kf.init_app(app)
    assert "kf_plugin" not in app.extensions


def test_a_rule_file_needing_the_api_is_refused_and_the_rules_in_force_stay(make_app, tmp_path):
    app = make_app()                                          # KF_APPID, no KF_SECRET
    plugin = app.extensions["kf_plugin"].plugin
    needy = tmp_path / "needy.yaml"
    needy.write_text("version: 1\nrules:\n  - name: session\n    event: CLICK\n    handoff: session\n",
                     encoding="utf-8")
    with pytest.raises(ConfigError, match="rule 'session' uses handoff: session"):
        plugin.load_rules(needy)
    assert WeChatTestClient(app).send_text("人工").message_type == "transfer_customer_service"


def test_without_flask_credentials_are_asked_for_where_they_are_given():
    router = MessageRouter()
    kf = KfPlugin(rules=[Rule.build("online", keywords="在线", require_online=True)])
    with pytest.raises(ConfigError, match=r"KF_APPID and KF_SECRET are not set: set KF_APPID and KF_SECRET "
                                          r"with KfPlugin\(appid=..., secret=...\)"):
        kf.register(router)


def test_without_flask_the_plugin_uses_the_credentials_it_was_given(api):
    api.sandbox.add_agent("wang@gh_test", "小王", wx="wang_wechat", online=True)
    router = MessageRouter()
    kf = KfPlugin(rules=[Rule.build("talk", event="CLICK", event_key="TALK", handoff="session")],
                  appid=api.sandbox.appid, secret=api.sandbox.secret, api_base_url=api.url)
    kf.configure({"KF_HANDOFF_BUDGET": 2})
    kf.register(router)                                       # style (b)
    api.sandbox.interact("oUser", "click")
    reply = router.dispatch(parse_push(message_xml(event="CLICK", key="TALK", sender="oUser")))
    assert reply.type == "text" and api.sandbox.sessions["oUser"]["kf_account"] == "wang@gh_test"
    assert kf.jobs.scheduler.running                         # started by the first message, not by register
    assert kf.admin.client.appid == api.sandbox.appid        # no app, no app context
    kf.shutdown()


def test_configure_refuses_unknown_settings_and_bad_values():
    kf = KfPlugin()
    with pytest.raises(ConfigError, match="no such setting: KF_SECRETS"):
        kf.configure({"KF_SECRETS": "x"})
    with pytest.raises(ConfigError, match="KF_API_TIMEOUT must be a number"):
        kf.configure({"KF_API_TIMEOUT": "soon"})


# -- the webhook's URL ---------------------------------------------------------------------------------

@pytest.mark.parametrize("methods", [["POST"], ["GET"], ["GET", "POST"]])
def test_a_view_already_on_kf_url_is_refused_by_name(rules_file, methods):
    app = Flask("taken")
    app.config.update(KF_TOKEN=TOKEN)
    app.add_url_rule("/wechat", "old_wechat_view", lambda: "success", methods=methods)
    with pytest.raises(ConfigError, match="KF_URL '/wechat' is already served by the view 'old_wechat_view'"):
        KfPlugin(app, rules=rules_file)
    app.config["KF_URL"] = "/kf"
    KfPlugin(app, rules=rules_file)                            # a free path is fine
    assert WeChatTestClient(app, url="/kf").send_text("人工").message_type == "transfer_customer_service"


def test_memory_mode_keeps_no_more_than_the_settings_allow(make_app):
    app = make_app(KF_MEMORY_USERS=2, KF_MEMORY_REPLIES=2)
    client = WeChatTestClient(app)
    for n in range(3):
        assert client.send_text("hello", sender=f"oUser{n}").status == 200
    services = app.extensions["kf_plugin"].services
    assert [services.window.status(f"oUser{n}").known for n in range(3)] == [False, True, True]
    assert len(services.shared.replay) == 2
