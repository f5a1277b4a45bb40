import pytest

from slipway.platform import validation
from slipway.platform.errors import InvalidInput
from slipway.platform.secrets import decrypt, encrypt, hash_token, new_token


@pytest.mark.parametrize("name", ["ab", "my-app", "a1", "app-2-go", "x" * 30])
def test_app_names_accepted(name):
    assert validation.app_name(name) == name


@pytest.mark.parametrize(
    "name",
    ["", "a", "A", "1app", "-app", "app-", "my_app", "my app", "x" * 31, "app;rm -rf /",
     "app\nx", "../etc", "app.example", "ápp", "app$(id)", None, 5, ["app"]],
)
def test_app_names_refused(name):
    with pytest.raises(InvalidInput) as info:
        validation.app_name(name)
    assert info.value.field == "name"
    assert info.value.message.startswith("App name must be 2-30 characters")


@pytest.mark.parametrize("key", ["A", "_", "DATABASE_URL", "lower_case", "K9"])
def test_config_keys_accepted(key):
    assert validation.config_key(key) == key


@pytest.mark.parametrize("key", ["", "9A", "A-B", "A B", "A=B", "A\nB", "$A", "KEY;", "É", None])
def test_config_keys_refused(key):
    with pytest.raises(InvalidInput) as info:
        validation.config_key(key)
    assert "Invalid config key" in info.value.message


def test_port_is_reserved():
    with pytest.raises(InvalidInput, match="PORT is set by Slipway"):
        validation.config_key("PORT")


@pytest.mark.parametrize("value", ["", "it's \"quoted\"", "line1\nline2", "$HOME ${X} `id`",
                                   "ünïcødé ✓", "\\back\\slash"])
def test_config_values_kept_byte_for_byte(value):
    assert validation.config_value("K", value) == value
    assert decrypt("k", encrypt("k", value)) == value


@pytest.mark.parametrize("value", [1, None, "nul\x00byte", "x" * (32 * 1024 + 1)])
def test_config_values_refused(value):
    with pytest.raises(InvalidInput):
        validation.config_value("K", value)


def test_decrypt_with_another_key_fails():
    with pytest.raises(ValueError, match="wrong SLIPWAY_SECRET_KEY"):
        decrypt("other", encrypt("key", "secret"))


def test_tokens_are_random_and_hashed():
    first, second = new_token(), new_token()
    assert first != second and first.startswith("slp_")
    assert hash_token(first) != first and len(hash_token(first)) == 64
