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


def email(value: object) -> str:
    if not isinstance(value, str) or not EMAIL.fullmatch(value.strip()):
        raise InvalidInput("Invalid email address", field="email")
    return value.strip().lower()
