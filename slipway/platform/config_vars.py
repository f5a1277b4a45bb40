"""Config vars: stored encrypted; a change makes a new release."""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from sqlalchemy.orm import Session

from slipway.builder.appjson import EnvVar
from slipway.config import Settings
from slipway.platform import validation
from slipway.platform.errors import BadRequest, InvalidInput
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


def check_declared(declared: Sequence[EnvVar]) -> None:
    """Refuse app.json ``env`` entries whose key or value config vars cannot have.

    Raises InvalidInput naming the key path (``app.json env/my-key: ...``).
    """
    for var in declared:
        try:
            validation.config_key(var.key)
            if var.value is not None:
                validation.config_value(var.key, var.value)
        except InvalidInput as exc:
            shown = var.key if len(var.key) <= 40 else var.key[:40] + "…"
            raise InvalidInput(f"app.json env/{shown}: {exc.message}",
                               field=f"env/{shown}") from None


@dataclass
class Seeded:
    """What app.json ``env`` did to an app's config (names only: values are secrets)."""

    set: list[str] = field(default_factory=list)
    generated: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)

    def notes(self) -> list[str]:
        """Lines for the push output."""
        lines = []
        if self.set or self.generated:
            names = [*self.set, *(f"{key} (generated)" for key in self.generated)]
            lines.append(f"Config vars set from app.json: {', '.join(sorted(names))}")
        for key in self.missing:
            lines.append(f"app.json env/{key} is required and not set: "
                         f"slipway config:set {key}=...")
        return lines


def seed_from_app_json(
    session: Session, secret_key: str, app: App, declared: Sequence[EnvVar], *,
    provided: Iterable[str] = (), limits: ConfigLimits | None,
) -> Seeded:
    """Set what app.json ``env`` declares, on the app's first deploy only.

    Before the app has ever deployed, each entry with a ``value`` or ``"generator":
    "secret"`` (64 hex characters) whose key is not set yet gets set; later deploys
    never set or overwrite anything, so a value the user changed or unset stays so.
    ``provided`` are keys set another way (attached capsules' URLs): never touched.
    Required entries without a value that are still unset are reported, not refused:
    nothing can ask for them in a push, and the health check tells whether the app
    runs without them. Raises InvalidInput when the config would exceed ``limits``.
    """
    have = set(get_config(secret_key, app)) | set(provided)
    seeded = Seeded()
    changes: dict[str, str | None] = {}
    if app.current_release_id is None:
        for var in declared:
            if var.key in have:
                continue
            if var.value is not None:
                changes[var.key] = var.value
                seeded.set.append(var.key)
            elif var.generator == "secret":
                changes[var.key] = secrets.token_hex(32)
                seeded.generated.append(var.key)
    if changes:
        apply_changes(session, secret_key, app, changes, limits=limits)
    seeded.missing = [var.key for var in declared
                      if var.required and var.value is None and var.generator is None
                      and var.key not in have]
    return seeded
