"""One validator per kind of user input, used by the API, CLI, git hook and tasks."""

from __future__ import annotations

import re

from slipway.platform.errors import InvalidInput

APP_NAME = re.compile(r"[a-z][a-z0-9-]{1,29}")
CONFIG_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
CAPSULE_ALIAS = re.compile(r"[A-Z][A-Z0-9_]{0,49}")
EMAIL = re.compile(r"[^@\s]{1,64}@[A-Za-z0-9.-]{1,253}")
# Keys Slipway sets itself; an app cannot override them.
RESERVED_CONFIG_KEYS = frozenset({"PORT"})
MAX_CONFIG_KEY = 256
MAX_CONFIG_VALUE = 32 * 1024


def is_name(value: object) -> bool:
    """Whether ``value`` follows the app and capsule name rule."""
    return isinstance(value, str) and APP_NAME.fullmatch(value) is not None \
        and not value.endswith("-")


def app_name(value: object) -> str:
    if not isinstance(value, str) or not APP_NAME.fullmatch(value) or value.endswith("-"):
        raise InvalidInput(
            "App name must be 2-30 characters: a lowercase letter, then lowercase letters, "
            "digits or dashes, not ending in a dash",
            field="name",
        )
    return value


def capsule_name(value: object) -> str:
    """Capsule names follow the app name rule (they name Docker objects and hosts)."""
    if not isinstance(value, str) or not APP_NAME.fullmatch(value) or value.endswith("-"):
        raise InvalidInput(
            "Capsule name must be 2-30 characters: a lowercase letter, then lowercase letters, "
            "digits or dashes, not ending in a dash",
            field="name",
        )
    return value


def capsule_alias(value: object) -> str:
    """The prefix of the variable an attached capsule sets (DATABASE -> DATABASE_URL)."""
    if not isinstance(value, str) or not CAPSULE_ALIAS.fullmatch(value):
        raise InvalidInput(
            "as must be 1-50 characters: uppercase letters, digits and underscores, "
            "starting with a letter",
            field="as",
        )
    return value


def config_key(value: object) -> str:
    if (
        not isinstance(value, str)
        or len(value) > MAX_CONFIG_KEY
        or not CONFIG_KEY.fullmatch(value)
    ):
        shown = value if isinstance(value, str) and len(value) <= 64 else "key"
        raise InvalidInput(
            f"Invalid config key {shown!r}: use letters, digits and underscores, "
            "not starting with a digit",
            field=str(shown),
        )
    if value in RESERVED_CONFIG_KEYS:
        raise InvalidInput(f"{value} is set by Slipway and cannot be changed", field=value)
    return value


def config_value(key: str, value: object) -> str:
    if not isinstance(value, str):
        raise InvalidInput(f"Value of {key} must be a string", field=key)
    if "\x00" in value:
        raise InvalidInput(f"Value of {key} must not contain NUL bytes", field=key)
    if len(value.encode()) > MAX_CONFIG_VALUE:
        raise InvalidInput(f"Value of {key} is longer than {MAX_CONFIG_VALUE} bytes", field=key)
    return value


def config_bytes(config: dict[str, str]) -> int:
    """The size of a config as its limit counts it: keys and values, in UTF-8."""
    return sum(len(k.encode()) + len(v.encode()) for k, v in config.items())


def config_size(before: dict[str, str], after: dict[str, str], *, max_keys: int,
                max_bytes: int) -> None:
    """Refuse a change that leaves a config over its limits, naming the limit.

    A change that does not grow an over-limit measure passes (unsetting always must,
    and a config made before a limit was lowered can still shrink or be edited).
    """
    keys = len(after)
    if keys > max_keys and keys > len(before):
        raise InvalidInput(f"Config is limited to {max_keys} keys: this change would make "
                           f"{keys}", field="config")
    size = config_bytes(after)
    if size > max_bytes and size > config_bytes(before):
        raise InvalidInput(f"Config is limited to {max_bytes} bytes (keys and values "
                           f"together): this change would make {size}", field="config")


def email(value: object) -> str:
    if not isinstance(value, str) or not EMAIL.fullmatch(value.strip()):
        raise InvalidInput("Invalid email address", field="email")
    return value.strip().lower()


# --- domains (issue 5) --------------------------------------------------------

MAX_DOMAIN = 253
MAX_DOMAIN_INPUT = 1024


def domain(value: object, field: str = "hostname") -> str:
    """A host name as nginx and ACME will see it: lowercase ASCII, punycode for IDNs.

    Accepts internationalised names (converted with IDNA 2008 / UTS 46, so
    ``Bücher.example`` becomes ``xn--bcher-kva.example``) and one trailing dot.
    Refuses wildcards (HTTP-01 cannot validate them), IP addresses, single-label
    names, labels that break RFC 1123 or exceed 63 characters, and names over
    253 characters. Raises InvalidInput naming ``field``.
    """
    import idna

    from slipway.router.errors import InvalidRouteError
    from slipway.router.nginx import validate_host

    if not isinstance(value, str) or not value:
        raise InvalidInput("Domain must be a non-empty string", field=field)
    if len(value) > MAX_DOMAIN_INPUT:
        raise InvalidInput(f"Domain is longer than {MAX_DOMAIN} characters", field=field)
    shown = value if len(value) <= 64 else value[:61] + "..."
    if "*" in value:
        raise InvalidInput(
            f"Invalid domain {shown!r}: wildcard domains are not supported (certificates are "
            "obtained over HTTP-01, which cannot validate them)", field=field)
    text = value[:-1] if value.endswith(".") else value
    if re.fullmatch(r"[0-9.]+|.*:.*", text):
        raise InvalidInput(f"Invalid domain {shown!r}: an IP address is not a domain",
                           field=field)
    try:
        ascii_name = idna.encode(text, uts46=True).decode("ascii")
    except (idna.IDNAError, UnicodeError) as exc:
        raise InvalidInput(f"Invalid domain {shown!r}: {exc}", field=field) from None
    try:
        validate_host(ascii_name, field)
    except InvalidRouteError:
        raise InvalidInput(
            f"Invalid domain {shown!r}: use dot-separated labels of letters, digits and "
            f"hyphens, each at most 63 characters and {MAX_DOMAIN} in all", field=field,
        ) from None
    if "." not in ascii_name:
        raise InvalidInput(f"Invalid domain {shown!r}: a domain needs at least two labels "
                           "(e.g. www.example.com)", field=field)
    return ascii_name
