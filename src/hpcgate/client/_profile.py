"""Where the SDK and the CLI find the gateway's URL and a token.

In order: what the caller passes; ``HPCGATE_URL`` and ``HPCGATE_TOKEN`` (CI pipelines keep
secrets in the environment); then a profile saved by ``hpcgate login`` in
``profiles.json`` in the user's config directory (``HPCGATE_CONFIG_DIR`` overrides it), a
file of mode 0600 in a directory of mode 0700. ``HPCGATE_PROFILE`` names the profile to
use when none is passed; else the one saved last by ``login``.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import platformdirs

FILE_NAME = "profiles.json"
DEFAULT = "default"


@dataclass(frozen=True)
class OidcLogin:
    """How a profile's access token (from ``hpcgate login --oidc``) is renewed: with this
    refresh token at this provider's token endpoint, before ``expires_at`` (Unix time)."""

    issuer: str
    client_id: str
    token_endpoint: str
    refresh_token: str
    expires_at: float

    @classmethod
    def of(cls, entry: object) -> OidcLogin | None:
        """The login a profile entry's ``oidc`` member holds, if it holds a whole one."""
        if not isinstance(entry, dict):
            return None
        try:
            return cls(
                str(entry["issuer"]),
                str(entry["client_id"]),
                str(entry["token_endpoint"]),
                str(entry["refresh_token"]),
                float(entry["expires_at"]),
            )
        except (KeyError, TypeError, ValueError):
            return None


@dataclass(frozen=True)
class Profile:
    url: str | None
    token: str | None
    #: The refresh of a token from an OpenID provider (None: an hpcgate token).
    oidc: OidcLogin | None = None
    #: The saved profile the token came from (None: an argument or the environment).
    name: str | None = None


def config_dir() -> Path:
    override = os.environ.get("HPCGATE_CONFIG_DIR")
    return Path(override) if override else Path(platformdirs.user_config_dir("hpcgate"))


def _read() -> dict[str, Any]:
    path = config_dir() / FILE_NAME
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {"current": None, "profiles": {}}
    except ValueError as exc:
        raise ValueError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("profiles"), dict):
        raise ValueError(f"{path} is not an hpcgate profiles file")
    return data


def load(name: str | None = None) -> Profile:
    """The saved profile ``name`` (default: ``HPCGATE_PROFILE``, else the current one)."""
    data = _read()
    chosen = name or os.environ.get("HPCGATE_PROFILE") or data.get("current") or DEFAULT
    entry = data["profiles"].get(chosen)
    if entry is None:
        if name is not None:
            raise KeyError(f"no profile {name!r} in {config_dir() / FILE_NAME}")
        return Profile(None, None)
    return Profile(entry.get("url"), entry.get("token"), OidcLogin.of(entry.get("oidc")), chosen)


def names() -> tuple[list[str], str | None]:
    """The saved profiles' names and the current one."""
    data = _read()
    return sorted(data["profiles"]), data.get("current")


def save(name: str, url: str, token: str, oidc: OidcLogin | None = None) -> Path:
    """Save (or replace) profile ``name`` and make it the current one; the file's path."""
    data = _read()
    data["profiles"][name] = {"url": url, "token": token}
    if oidc is not None:
        data["profiles"][name]["oidc"] = asdict(oidc)
    data["current"] = name
    return _write(data)


def renew(name: str, old_token: str, token: str, oidc: OidcLogin) -> bool:
    """Put a refreshed token into profile ``name`` if it still holds ``old_token`` (another
    process may have refreshed it meanwhile); whether it did."""
    data = _read()
    entry = data["profiles"].get(name)
    if not isinstance(entry, dict) or entry.get("token") != old_token:
        return False
    entry["token"], entry["oidc"] = token, asdict(oidc)
    _write(data)
    return True


def remove(name: str) -> bool:
    """Forget profile ``name``; whether there was one."""
    data = _read()
    if data["profiles"].pop(name, None) is None:
        return False
    if data.get("current") == name:
        data["current"] = None
    _write(data)
    return True


def _write(data: dict[str, Any]) -> Path:
    folder = config_dir()
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = folder / FILE_NAME
    handle, temporary = tempfile.mkstemp(dir=folder, prefix=".profiles-")  # created 0600
    try:
        with os.fdopen(handle, "w") as out:
            json.dump(data, out, indent=2)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def resolve(url: str | None, token: str | None, name: str | None = None) -> Profile:
    """URL and token by precedence: arguments, then the environment, then the profile."""
    url = url or os.environ.get("HPCGATE_URL")
    token = token or os.environ.get("HPCGATE_TOKEN")
    if url and token and name is None:
        return Profile(url, token)
    try:
        saved = load(name)
    except KeyError:
        if url and token:  # both given: the profile only ever adds the token's refresh
            return Profile(url, token)
        raise
    if url and saved.url and url.rstrip("/") != saved.url.rstrip("/"):
        return Profile(url, token)  # a saved token never goes to another gateway
    if token and token != saved.token:
        return Profile(url or saved.url, token)
    return Profile(url or saved.url, saved.token, saved.oidc, saved.name)
