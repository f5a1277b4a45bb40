"""Config vars: stored encrypted; a change makes a new release."""

from __future__ import annotations

from sqlalchemy.orm import Session

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


def apply_changes(
    session: Session, secret_key: str, app: App, changes: dict[str, str | None]
) -> dict[str, str]:
    """Set and unset keys (already validated); returns the resulting config."""
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
