import pytest
from acme import messages

from slipway.router.acme_client import _from_problem


@pytest.mark.parametrize(("code", "kind"), [
    ("rejectedIdentifier", "rejected"),
    ("caa", "rejected"),
    ("malformed", "rejected"),
    ("dns", "challenge_failed"),
    ("connection", "challenge_failed"),
    ("unauthorized", "challenge_failed"),
    ("serverInternal", "error"),
])
def test_problem_documents_map_to_a_status_users_can_act_on(code, kind):
    failure = _from_problem(messages.Error.with_code(code, detail="because"), "shop.example.test")
    assert failure.kind == kind
    assert failure.message.endswith("because")
