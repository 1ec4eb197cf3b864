"""The development secret: what lets `serve` and `token` work on a bare machine."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import msgspec

from entrypoints.settings import Settings

SECRET_FILE = "dev-jwt-secret"  # noqa: S105 (a file name)


def with_development_secret(settings: Settings) -> tuple[Settings, bool]:
    """`settings`, given the store folder's generated secret when no JWT secret is set.

    Only in embedded mode (the settings refuse a backend without a secret). The second value
    says whether the generated secret is in use, so that `serve` can warn and show a demo.
    """
    if settings.auth.jwt_secret or settings.auth.jwt_secrets:
        return settings, False
    secret = _read_or_create(Path(settings.store.path) / SECRET_FILE)
    auth = msgspec.structs.replace(settings.auth, jwt_secret=secret)
    return msgspec.structs.replace(settings, auth=auth), True


def _read_or_create(path: Path) -> str:
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    secret = secrets.token_urlsafe(48)
    draft = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as file:
        file.write(secret + "\n")
    # A hard link appears whole or not at all: when two processes start at once, one
    # secret wins and both use it.
    try:
        os.link(draft, path)
    except FileExistsError:
        secret = path.read_text().strip()
    finally:
        draft.unlink()
    return secret
