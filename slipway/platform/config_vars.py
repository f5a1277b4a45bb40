"""Config vars: stored encrypted; a change makes a new release."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session

from slipway.config import Settings
from slipway.platform import validation
from slipway.platform.errors import BadRequest
from slipway.platform.models import App, ConfigVar
from slipway.platform.secrets import decrypt, encrypt


def get_config(secret_key: str, app: App) -> dict[str, str]:
    return {var.key: decrypt(secret_key, var.value_encrypted) for var in app.config_vars}


def validate_changes(changes: object) -> dict[str, str | None]:
    """Check a PATCH body: a JSON object of KEY: string (set) or null (unset)."""
    if not isinstance(changes, dict) or not changes:
        raise BadRequest("Send a JSON object of KEY: value (null unsets KEY)")
    checked: dict[str, str | None] = {}
    for key, value in changes.items():
        validation.config_key(key)
        checked[key] = None if value is None else validation.config_value(key, value)
    return checked


@dataclass(frozen=True)
class ConfigLimits:
    """How much config one app may hold (SLIPWAY_CONFIG_MAX_KEYS and _MAX_BYTES)."""

    max_keys: int
    max_bytes: int

    @classmethod
    def of(cls, settings: Settings) -> ConfigLimits:
        return cls(max_keys=settings.config_max_keys, max_bytes=settings.config_max_bytes)


def apply_changes(
    session: Session, secret_key: str, app: App, changes: dict[str, str | None], *,
    limits: ConfigLimits | None,
) -> dict[str, str]:
    """Set and unset keys (already validated); returns the resulting config.

    Raises InvalidInput (field "config") before changing anything when the result
    would be over ``limits``; unsetting is always allowed. None is no limit: for a
    rollback, which restores a config that was accepted once.
    """
    before = get_config(secret_key, app)
    after = {k: v for k, v in {**before, **changes}.items() if v is not None}
    if limits is not None:
        validation.config_size(before, after, max_keys=limits.max_keys,
                               max_bytes=limits.max_bytes)
    existing = {var.key: var for var in app.config_vars}
    for key, value in changes.items():
        var = existing.get(key)
        if value is None:
            if var is not None:
                app.config_vars.remove(var)
                session.delete(var)
        elif var is None:
            app.config_vars.append(ConfigVar(key=key, value_encrypted=encrypt(secret_key, value)))
        else:
            var.value_encrypted = encrypt(secret_key, value)
    session.flush()
    return get_config(secret_key, app)
