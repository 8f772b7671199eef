"""WeCom errcodes → exception classes and meanings."""
import pytest

from kf_plugin.errors import InvalidTokenError, RateLimitedError, WeChatAPIError, is_transient
from kf_plugin.wecom.errors import (
    TOKEN_PATH,
    WECOM_ERROR_MEANINGS,
    KfApiAccessError,
    OpenKfidError,
    SendWindowError,
    ServicerUnavailableError,
    SessionStateError,
    SyncTokenError,
    UnknownCustomerError,
    WeComAPIError,
    WeComCredentialsError,
    WeComRateLimitedError,
    WeComTokenError,
    meaning_of,
    wecom_error,
)

SEND = "/cgi-bin/kf/send_msg"


@pytest.mark.parametrize("errcode, path, cls", [
    (40001, SEND, WeComTokenError),
    (40014, SEND, WeComTokenError),
    (42001, SEND, WeComTokenError),
    (40001, TOKEN_PATH, WeComCredentialsError),
    (40013, TOKEN_PATH, WeComCredentialsError),
    (41004, TOKEN_PATH, WeComCredentialsError),
    (60020, SEND, WeComCredentialsError),
    (45009, SEND, WeComRateLimitedError),
    (45033, SEND, WeComRateLimitedError),
    (48002, SEND, KfApiAccessError),
    (95011, SEND, KfApiAccessError),
    (95012, SEND, KfApiAccessError),
    (95017, SEND, KfApiAccessError),
    (95023, SEND, KfApiAccessError),
    (95000, SEND, OpenKfidError),
    (95004, SEND, OpenKfidError),
    (40096, SEND, UnknownCustomerError),
    (95001, SEND, SendWindowError),
    (95002, SEND, SendWindowError),
    (95013, SEND, SessionStateError),
    (95016, SEND, SessionStateError),
    (95018, SEND, SessionStateError),
    (95014, SEND, ServicerUnavailableError),
    (95019, SEND, ServicerUnavailableError),
    (95007, SEND, SyncTokenError),
    (95008, SEND, WeComAPIError),
    (-1, SEND, WeComAPIError),
    (123456, SEND, WeComAPIError),
])
def test_each_errcode_gets_its_class(errcode, path, cls):
    error = wecom_error(errcode, "said", path)
    assert type(error) is cls and isinstance(error, WeChatAPIError)
    assert (error.errcode, error.errmsg, error.path) == (errcode, "said", path)


def test_token_and_rate_errors_are_also_the_official_accounts_kinds():
    assert isinstance(wecom_error(42001), InvalidTokenError)
    assert isinstance(wecom_error(45009), RateLimitedError)
    assert not isinstance(wecom_error(40001, path=TOKEN_PATH), InvalidTokenError)


def test_the_message_names_errcode_path_meaning_and_what_wecom_said():
    error = wecom_error(95018, "send msg session status invalid", SEND, " — try later")
    assert str(error) == (f"WeCom API error 95018 on {SEND}: {WECOM_ERROR_MEANINGS[95018]} "
                          "(WeCom said: send msg session status invalid) — try later")
    assert error.meaning == WECOM_ERROR_MEANINGS[95018]
    assert str(wecom_error(123456)) == "WeCom API error 123456: see WeCom's global error-code reference"


def test_40001_means_the_secret_only_where_the_token_is_fetched():
    assert meaning_of(40001, TOKEN_PATH).startswith("invalid secret")
    assert meaning_of(40001, SEND) == "invalid credential: the access token was refused"


def test_system_busy_is_transient_and_refusals_are_not():
    assert is_transient(wecom_error(-1)) and not is_transient(wecom_error(95001))
