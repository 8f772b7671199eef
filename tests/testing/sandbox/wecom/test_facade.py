"""The WeCom sub-facade: construction through Sandbox, inspection views, and their copies."""
from __future__ import annotations

import pytest

from kf_plugin.testing.sandbox import Sandbox, WeComError

from ..conftest import Clock
from .conftest import CUSTOMER, Kf, errcode


def test_the_sandbox_carries_wecom_with_its_own_corp(clock: Clock):
    sandbox = Sandbox(clock=clock, corpid="wwmycorp000000000", corp_secret="my-secret")
    assert (sandbox.wecom.corpid, sandbox.wecom.secret) == ("wwmycorp000000000", "my-secret")
    assert repr(sandbox.wecom) == "<WeComSandbox corpid='wwmycorp000000000'>"
    with sandbox.serve() as server:
        assert errcode(Kf(server.url, sandbox.wecom).gettoken()) == 0


def test_accounts_view_shows_servicers_and_their_status(wecom, kfid):
    assert wecom.accounts[kfid]["name"] == "售后客服"
    assert wecom.accounts[kfid]["servicers"] == {"zhangsan": True, "lisi": True, "wangwu": False, "zhaoliu": True}


def test_views_are_copies(wecom, kfid, kf: Kf):
    wecom.customer_says(kfid, CUSTOMER, "你好")
    kf.send_text(kfid, "您好")
    wecom.messages[0]["text"]["content"] = "changed"
    wecom.sent[0]["text"]["content"] = "changed"
    wecom.accounts[kfid]["servicers"]["zhangsan"] = False
    assert wecom.messages[0]["text"]["content"] == "你好" and wecom.sent[0]["text"]["content"] == "您好"
    assert wecom.accounts[kfid]["servicers"]["zhangsan"] is True


def test_service_state_of_unknown_accounts_and_customers(wecom, kfid):
    with pytest.raises(WeComError) as unknown_customer:
        wecom.service_state(kfid, "wmNobody")
    assert unknown_customer.value.errcode == 40096
    with pytest.raises(WeComError) as unknown_account:
        wecom.service_state("wk" + "X" * 30, CUSTOMER)
    assert unknown_account.value.errcode == 95004 and unknown_account.value.errmsg == "open_kfid not exist"


def test_add_account_applies_the_apis_rules(wecom):
    with pytest.raises(WeComError) as refused:
        wecom.add_account("")
    assert refused.value.errcode == 40058 and "name must be 1 to 16 characters" in str(refused.value)


def test_customer_says_refuses_empty_text(wecom, kfid):
    with pytest.raises(ValueError, match="text"):
        wecom.customer_says(kfid, CUSTOMER, "")
    with pytest.raises(ValueError, match="external_userid"):
        wecom.customer_says(kfid, "", "hi")
