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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import platformdirs

FILE_NAME = "profiles.json"
DEFAULT = "default"


@dataclass(frozen=True)
class Profile:
    url: str | None
    token: str | None


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
    return Profile(entry.get("url"), entry.get("token"))


def names() -> tuple[list[str], str | None]:
    """The saved profiles' names and the current one."""
    data = _read()
    return sorted(data["profiles"]), data.get("current")


def save(name: str, url: str, token: str) -> Path:
    """Save (or replace) profile ``name`` and make it the current one; the file's path."""
    data = _read()
    data["profiles"][name] = {"url": url, "token": token}
    data["current"] = name
    return _write(data)


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
    if url and token:
        return Profile(url, token)
    saved = load(name)
    if url and saved.url and url.rstrip("/") != saved.url.rstrip("/"):
        return Profile(url, token)  # a saved token never goes to another gateway
    return Profile(url or saved.url, token or saved.token)
