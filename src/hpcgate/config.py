"""Configuration: a TOML file, overridden by ``HPCGATE_*`` environment variables.

Precedence, highest first: explicit keyword arguments, environment variables
(``HPCGATE_PORT``, ``HPCGATE_SYSTEMS__LOCAL__SLOTS``...), the TOML file, defaults.
With no file and no variables the gateway runs one ``local`` system on the embedded
scheduler with its state in SQLite under ``home``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal

import platformdirs
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)
from sqlalchemy.engine import make_url

SystemName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_-]{0,62}$")]


def default_home() -> Path:
    """The per-user data directory (``~/.local/share/hpcgate`` on Linux)."""
    return platformdirs.user_data_path("hpcgate")


class SystemConfig(BaseModel):
    """One ``[systems.NAME]`` table: a scheduler reached through a transport."""

    model_config = ConfigDict(extra="forbid")

    scheduler: Literal["embedded", "slurm", "pbs"] = "embedded"
    transport: Literal["local"] = "local"
    description: str = ""
    status_interval: float = Field(1.0, gt=0, le=60, description="Seconds between status queries")
    command_timeout: float = Field(30.0, gt=0, description="Seconds before a command is killed")
    info_cache: float = Field(
        10.0, ge=0, description="Seconds partitions, nodes, reservations, accounts are cached"
    )
    slots: int = Field(
        default_factory=lambda: os.cpu_count() or 1,
        ge=1,
        description="Embedded scheduler: jobs run at once; more are queued",
    )
    spool: Path | None = Field(None, description="Embedded scheduler state (default: under home)")
    roots: list[str] = Field(
        default_factory=lambda: ["{home}"],
        min_length=1,
        description="Where the files API may go: directories, with '{user}' (the caller's"
        " account, or hpcgate name in single-user mode) and '{home}' (its home directory)",
    )
    workdir: str | None = Field(
        None,
        description="Default working directory: '{user}' is the caller's name, '{home}' its"
        " home directory (default: '{home}' for Slurm and PBS, under home for embedded)",
    )


class UsersConfig(BaseModel):
    """The ``[users]`` table: whose account a request's commands run as."""

    model_config = ConfigDict(extra="forbid")

    mode: Literal["auto", "single", "multi"] = Field(
        "auto",
        description="single: everything runs as the gateway's account; multi: each user runs"
        " as its mapped Unix account (needs root); auto: multi when the gateway runs as root",
    )
    map: dict[str, str] = Field(
        default_factory=dict, description="hpcgate user name -> Unix account name"
    )
    same_name: bool = Field(True, description="An unmapped user runs as the account of its name")
    min_uid: int = Field(1000, ge=1, description="Accounts below this uid are never used")


def _default_systems() -> dict[str, SystemConfig]:
    return {"local": SystemConfig(description="Embedded scheduler on this machine")}


class Settings(BaseSettings):
    """The gateway's effective configuration."""

    model_config = SettingsConfigDict(
        env_prefix="HPCGATE_", env_nested_delimiter="__", extra="forbid"
    )

    home: Path = Field(default_factory=default_home, description="Data directory")
    database_url: str = Field("", description="SQLAlchemy URL; default SQLite under home")
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    max_script_bytes: int = Field(1 << 20, ge=1, description="Largest accepted job script")
    max_request_bytes: int = Field(4 << 20, ge=1, description="Largest accepted JSON body")
    token_cache_seconds: float = Field(
        5.0, ge=0, description="How long a verified token is trusted without a database read"
    )
    systems: dict[SystemName, SystemConfig] = Field(default_factory=_default_systems)
    users: UsersConfig = Field(default_factory=UsersConfig)

    @model_validator(mode="after")
    def _fill_defaults(self) -> Settings:
        self.home = self.home.expanduser().absolute()
        if not self.database_url:
            self.database_url = f"sqlite+aiosqlite:///{self.home / 'hpcgate.db'}"
        for name, system in self.systems.items():
            if system.spool is None:
                system.spool = self.home / "systems" / name / "spool"
            if system.workdir is None and system.scheduler == "embedded":
                system.workdir = str(self.home / "work" / "{user}")
            elif system.workdir is None:
                system.workdir = "{home}"
        return self

    def masked(self) -> dict[str, Any]:
        """The configuration as plain data with secrets hidden, for display."""
        data = self.model_dump(mode="json")
        data["database_url"] = make_url(self.database_url).render_as_string(hide_password=True)
        return data


def config_path(explicit: Path | None) -> Path | None:
    """The config file to read: explicit, ``$HPCGATE_CONFIG``, or ``home/config.toml``."""
    if explicit is not None:
        return explicit
    if env := os.environ.get("HPCGATE_CONFIG"):
        return Path(env)
    candidate = Path(os.environ.get("HPCGATE_HOME") or default_home()) / "config.toml"
    return candidate if candidate.is_file() else None


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Read the effective settings; a named config file must exist."""
    path = config_path(config_file)
    if path is not None and not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")

    class _Settings(Settings):
        @classmethod
        def settings_customise_sources(
            cls,
            settings_cls: type[BaseSettings],
            init_settings: PydanticBaseSettingsSource,
            env_settings: PydanticBaseSettingsSource,
            dotenv_settings: PydanticBaseSettingsSource,
            file_secret_settings: PydanticBaseSettingsSource,
        ) -> tuple[PydanticBaseSettingsSource, ...]:
            sources = [init_settings, env_settings]
            if path is not None:
                sources.append(TomlConfigSettingsSource(settings_cls, toml_file=path))
            return tuple(sources)

    return _Settings(**overrides)
