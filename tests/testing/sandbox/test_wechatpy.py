"""wechatpy 1.8's client talks to the sandbox unchanged once given ``server.session()``."""
from __future__ import annotations

import pytest
from wechatpy import WeChatClient
from wechatpy.exceptions import WeChatClientException

JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 64


@pytest.fixture
def client(server, sandbox) -> WeChatClient:
    wechat = WeChatClient(sandbox.appid, sandbox.secret)
    wechat._http = server.session()
    return wechat


def test_a_customer_service_round_trip(client, sandbox, tmp_path):
    client.customservice.add_account("kf1@test", "客服1", "password")  # sends an md5 password: ignored
    client.post("https://api.weixin.qq.com/customservice/kfaccount/inviteworker",  # not in wechatpy 1.8
                data={"kf_account": "kf1@test", "invite_wx": "agent_wx1"})
    sandbox.accept_invite("kf1@test")
    sandbox.set_online("kf1@test")
    head = tmp_path / "head.jpg"
    head.write_bytes(JPEG)
    with head.open("rb") as image:
        client.customservice.upload_headimg("kf1@test", image)
    accounts = client.customservice.get_accounts()
    assert accounts[0]["kf_wx"] == "agent_wx1" and accounts[0]["kf_headimgurl"].startswith("http://")
    assert client.customservice.get_online_accounts()[0]["kf_account"] == "kf1@test"

    sandbox.interact("oUser1", "message")
    sandbox.enqueue("oUser1")
    assert client.customservice.get_wait_case()["count"] == 1
    client.customservice.create_session("oUser1", "kf1@test")
    assert client.customservice.get_session("oUser1")["kf_account"] == "kf1@test"
    assert client.customservice.get_session_list("kf1@test")[0]["openid"] == "oUser1"
    client.message.send_text("oUser1", "您好", account="kf1@test")
    now = int(sandbox.clock())
    records = client.customservice.get_records(now - 60, now + 60)["recordlist"]
    assert [(r["text"], r["worker"]) for r in records] == [("您好", "kf1@test")]
    client.customservice.close_session("oUser1", "kf1@test")
    client.customservice.delete_account("kf1@test")  # wechatpy still uses the legacy GET
    assert client.customservice.get_accounts() == []
    assert [c.errcode for c in sandbox.calls] == [0] * len(sandbox.calls)


def test_wechatpy_sees_the_errcodes(client, sandbox):
    with pytest.raises(WeChatClientException) as refused:
        client.message.send_text("oStranger", "hi")
    assert refused.value.errcode == 45015


def test_wechatpy_refetches_after_invalidation(client, sandbox):
    sandbox.interact("oUser1", "payment")
    client.message.send_text("oUser1", "one")
    sandbox.invalidate_tokens()
    client.message.send_text("oUser1", "two")  # wechatpy's auto_retry fetches a new token on 40001
    assert [c.errcode for c in sandbox.calls_to("/cgi-bin/message/custom/send")] == [0, 40001, 0]
    assert len(sandbox.calls_to("/cgi-bin/token")) == 2
