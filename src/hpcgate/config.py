"""Configuration: a TOML file, overridden by ``HPCGATE_*`` environment variables.

Precedence, highest first: explicit keyword arguments, environment variables
(``HPCGATE_PORT``, ``HPCGATE_SYSTEMS__LOCAL__SLOTS``...), the TOML file, defaults.
With no file and no variables the gateway runs one ``local`` system on the embedded
scheduler with its state in SQLite under ``home``.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import platformdirs
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    FilePath,
    PrivateAttr,
    SecretStr,
    StringConstraints,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)
from sqlalchemy.engine import make_url

from hpcgate.jobtemplates import UiConfig
from hpcgate.model.bounds import INT64_MAX, REPLICAS_MAX, SECONDS_MAX
from hpcgate.model.jobs import TimeLimit
from hpcgate.model.patterns import backtracking_risk
from hpcgate.model.principal import DEFAULT_SCOPES, Role, Scope
from hpcgate.model.services import ServiceName, ServiceSpec
from hpcgate.model.tokens import USER_NAME_PATTERN

SystemName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_-]{0,62}$")]
ACCOUNT_NAME_PATTERN = r"^[a-z_][a-z0-9_.-]{0,31}$"
AccountName = Annotated[str, StringConstraints(pattern=ACCOUNT_NAME_PATTERN)]
JUMP_HOST = r"^(?:[a-z_][a-z0-9_.-]{0,31}@)?(?:[A-Za-z0-9_.-]+|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?$"


IDENTITY_FILES = {"ca": "ca_key", "keys": "keys_dir", "forced": "key"}  # what each needs


ROOT_HOME = Path("/var/lib/hpcgate")


def default_home() -> Path:
    """The per-user data directory (``~/.local/share/hpcgate`` on Linux), or for root
    ``/var/lib/hpcgate``: a root gateway runs jobs as the users' own accounts, whose
    directories under the home they must reach, and root's home is closed to them."""
    if os.geteuid() == 0:
        return ROOT_HOME
    return platformdirs.user_data_path("hpcgate")


def refuse_orphaned_root_home(home: Path) -> None:
    """An earlier release kept a root gateway's data in root's ``~/.local/share/hpcgate``.
    A root gateway whose home is now the default, still empty, refuses to start a new one
    beside the old, which would lose every token and job silently (ValueError: what to do)."""
    legacy = Path.home() / ".local" / "share" / "hpcgate"
    fresh = not (home / "hpcgate.db").exists()
    if os.geteuid() == 0 and home == ROOT_HOME and fresh and (legacy / "hpcgate.db").exists():
        raise ValueError(
            f"a root gateway's data is now in {ROOT_HOME}, and the data of an earlier one is in"
            f" {legacy}: move it (mv {legacy} {ROOT_HOME}), or keep it there with"
            f" HPCGATE_HOME={legacy}"
        )


class SshConfig(BaseModel):
    """The ``[systems.NAME.ssh]`` table: how the gateway logs in to a system it does not run on.

    Host keys are always checked against ``known_hosts``. Commands log in as the caller's
    mapped account (multi-user mode) or as ``user`` (the gateway's own commands, such as the
    watcher's status queries, and every command in single-user mode). With identity
    ``forced`` every command of every caller logs in as ``user``, a functional account whose
    key runs only hpcgate-forced (see :mod:`hpcgate.forced`).
    """

    model_config = ConfigDict(extra="forbid")

    host: str = Field(min_length=1, description="The login node's name or address")
    port: int = Field(22, ge=1, le=65535)
    known_hosts: FilePath = Field(
        description="A known_hosts file holding the host's keys (or its CA): always verified"
    )
    jump_host: str | None = Field(
        None,
        pattern=JUMP_HOST,
        description="'[user@]host[:port]' to reach the host through (ssh -J); its key must"
        " be in known_hosts too",
    )
    identity: Literal["ca", "keys", "forced"] = Field(
        description="ca: short-lived certificates signed with ca_key; keys: keys_dir/ACCOUNT;"
        " forced: every user's commands and jobs run as the one functional account 'user',"
        " whose key runs only hpcgate-forced (the cluster does not keep users apart)"
    )
    ca_key: FilePath | None = Field(
        None, description="identity = 'ca': the CA's private key (mode 0600 or stricter)"
    )
    cert_minutes: float = Field(5.0, gt=0, le=24 * 60, description="A certificate's lifetime")
    keys_dir: Path | None = Field(
        None, description="identity = 'keys': the private key of account NAME is keys_dir/NAME"
    )
    key: FilePath | None = Field(
        None,
        description="identity = 'forced': the functional account's private key (mode 0600 or"
        " stricter); its public half runs hpcgate-forced in that account's authorized_keys",
    )
    user: AccountName = Field(
        description="The account the gateway's own commands log in as (the watcher's status"
        " queries; every command in single-user mode; every command with identity = 'forced')"
    )
    max_connections: int = Field(32, ge=1, description="Open connections at most, all accounts")
    sessions_per_connection: int = Field(
        8,
        ge=2,
        description="Channels open at once on one connection: at most sshd's MaxSessions"
        " (10 by default), better a little less; SFTP keeps one of them",
    )
    idle_seconds: float = Field(60.0, gt=0, description="An unused connection is closed after")
    keepalive_seconds: float = Field(15.0, gt=0, description="Seconds between keepalives")
    connect_timeout: float = Field(10.0, gt=0, description="Seconds to connect and log in")
    stream: Literal["auto", "forward", "relay"] = Field(
        "auto",
        description="How streams reach the cluster's nodes (services): forward, a direct-tcpip"
        " channel (sshd must allow forwarding); relay, hpcgate-forced's 'relay HOST PORT'"
        " (identity = 'forced' only); auto, forward, and with identity = 'forced' the relay"
        " from the first time sshd refuses to forward",
    )

    bulk: Literal["auto", "openssh", "asyncssh"] = Field(
        "auto",
        description="What carries a long file transfer (a download or upload past 8 MiB):"
        " openssh, SFTP over OpenSSH's own client run as a subprocess (ssh -s ... sftp; its"
        " SSH layer in C, on another core: faster); asyncssh, the pooled connections; auto,"
        " openssh if ssh is installed and there is no jump_host",
    )

    @field_validator("user")
    @classmethod
    def _not_root(cls, user: str) -> str:
        if user == "root":
            raise ValueError("the gateway never logs in as root: name an ordinary account")
        return user

    @model_validator(mode="after")
    def _bulk_route(self) -> SshConfig:
        if self.bulk == "openssh" and self.jump_host is not None:
            raise ValueError("bulk = 'openssh' cannot go through a jump_host: use 'asyncssh'")
        return self

    @model_validator(mode="after")
    def _identity_files(self) -> SshConfig:
        needed = IDENTITY_FILES[self.identity]
        given = [name for name in IDENTITY_FILES.values() if getattr(self, name) is not None]
        if given != [needed]:
            others = " or ".join(name for name in IDENTITY_FILES.values() if name != needed)
            raise ValueError(f"identity = '{self.identity}' needs {needed} (and takes no {others})")
        if self.keys_dir is not None and not self.keys_dir.is_dir():
            raise ValueError(f"keys_dir is not a directory: {self.keys_dir}")
        if self.stream == "relay" and self.identity != "forced":
            raise ValueError("stream = 'relay' needs identity = 'forced' (hpcgate-forced relays)")
        return self


class SystemConfig(BaseModel):
    """One ``[systems.NAME]`` table: a scheduler reached through a transport."""

    model_config = ConfigDict(extra="forbid")

    scheduler: Literal["embedded", "slurm", "pbs"] = "embedded"
    transport: Literal["local", "ssh", "agent"] = Field(
        "local",
        description="How the gateway reaches the system: 'local' (this machine), 'ssh' (a"
        " login node), 'agent' (hpcgate-agent on the login node dials out to the gateway)",
    )
    ssh: SshConfig | None = Field(None, description="transport = 'ssh': where and how to log in")
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
        default_factory=list,  # filled in: see Settings._fill_defaults
        min_length=1,
        description="Where the files API may go: directories, with '{user}' (the caller's"
        " account; its hpcgate name in single-user mode or with the [users] fallback account)"
        " and '{home}' (its home directory)."
        " Default: '{home}' for Slurm and PBS; for embedded the caller's own directory"
        " HOME/work/{user} (the gateway's home, not the account's), its default workdir too",
    )
    workdir: str | None = Field(
        None,
        description="Default working directory, created on first use: '{user}' and '{home}'"
        " as in roots (default: '{home}' for Slurm and PBS, HOME/work/{user} for embedded)",
    )
    project_root: str | None = Field(
        None,
        max_length=1024,
        pattern=r"^/[^{}]*/\{project\}$",
        description="Each project's files root, '{project}' its last component (e.g."
        " '/p/{project}'): a root of every member of the project, who may read there with"
        " any role and write as a member or owner (as the caller's own account, so the"
        " directory's Unix permissions must let the members in too)",
    )

    @property
    def functional_account(self) -> str | None:
        """The one account every user's commands and jobs run as on this system (SSH
        identity = 'forced'), or None when each runs as its own (or the gateway's)."""
        return self.ssh.user if self.ssh is not None and self.ssh.identity == "forced" else None

    @model_validator(mode="after")
    def _transport_table(self) -> SystemConfig:
        if not self.roots and self.scheduler != "embedded":
            self.roots = ["{home}"]  # embedded: per user under the gateway's home (Settings)
        if self.transport == "ssh" and self.ssh is None:
            raise ValueError("transport = 'ssh' needs an [ssh] table (host, known_hosts...)")
        if self.transport != "ssh" and self.ssh is not None:
            raise ValueError("an [ssh] table is only for transport = 'ssh'")
        if self.transport == "ssh" and self.scheduler == "embedded":
            raise ValueError(
                "the embedded scheduler runs on the gateway's machine: transport = 'ssh'"
                " needs scheduler = 'slurm' or 'pbs'"
            )
        if self.functional_account and any("{user}" not in root for root in self.roots):
            raise ValueError(
                "identity = 'forced' runs every user as one account, so only the roots keep"
                " their files apart: give each root a '{user}', e.g. roots ="
                " ['{home}/files/{user}']"
            )
        return self


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
    fallback: AccountName | None = Field(
        None,
        description="Multi-user mode: the unprivileged account that users with no Unix"
        " account of their own (or of their map entry) run as. They all share it, so their"
        " jobs can read each other's files (the files API still keeps each in its own roots)."
        " None (the default): such a user is refused with a 403 that says why",
    )


class ServiceConfig(ServiceSpec):
    """One ``[services.NAME]`` table: a service the admin declares (see
    :class:`~hpcgate.model.services.ServiceSpec` for its fields)."""

    users: list[str] = Field(
        default_factory=list, description="hpcgate users who may use it; '*': everyone"
    )
    run_as: str | None = Field(
        None,
        pattern=r"^[a-z_][a-z0-9_.-]{0,63}$",
        description="The hpcgate user whose account its jobs run as (mapped like a request"
        " of that user); needed in multi-user mode. Default: the gateway's own account",
    )


class ServiceLimits(BaseModel):
    """The ``[service_limits]`` table: how much the services users start of their own may
    hold, per user. Declared services are the admin's and count for no one. Checked when a
    service is created or scaled (403 ``limit-exceeded``) and by the controller, which
    never starts a replica past them even if stored services ask for more."""

    model_config = ConfigDict(extra="forbid")

    services_per_user: int = Field(20, ge=0, le=10_000, description="Services one user has")
    replicas_per_user: int = Field(
        32,
        ge=0,
        le=100_000,
        description="Replicas one user's services may have at once, all together: the sum"
        " of their max_replicas, and the replicas the controller keeps live",
    )
    replicas_per_service: int = Field(
        16, ge=0, le=REPLICAS_MAX, description="The max_replicas of one user's service"
    )
    time_limit: TimeLimit = Field(
        None,
        gt=0,
        le=SECONDS_MAX,
        description="The longest time limit of a replica's job (seconds or Slurm's"
        " '1:00:00'); a service that names none gets this one. None: no limit of hpcgate's",
    )


#: Requests per minute a user's limit allows at most (a sliding-window counter: two counts).
USER_PER_MINUTE_MAX = 1_000_000
#: Streams a user's limit allows at once at most.
STREAMS_MAX = 100_000
#: The longest a user's requests-per-minute window may be made, in seconds.
USER_WINDOW_MAX = 3600
UNLIMITED = "unlimited"
UserKey = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.@-]{0,63}$")]


@dataclass(frozen=True, slots=True)
class Allowance:
    """What one user may do (None: no limit)."""

    requests_per_minute: int | None = None
    concurrent_streams: int | None = None
    llm_tokens_per_day: int | None = None

    @property
    def limited(self) -> bool:
        return any(
            value is not None
            for value in (
                self.requests_per_minute,
                self.concurrent_streams,
                self.llm_tokens_per_day,
            )
        )


class UserRateLimits(BaseModel):
    """One user's limits (``[rate_limits.users.NAME]``), field by field over the defaults;
    ``"unlimited"`` lifts a default for that user."""

    model_config = ConfigDict(extra="forbid")

    requests_per_minute: int | Literal["unlimited"] | None = Field(
        None,
        description="Requests to any API route (with a token: /api/v1/health and the"
        " documentation take none) in a minute; each whole minute the window turns",
    )
    concurrent_streams: int | Literal["unlimited"] | None = Field(
        None,
        description="Streamed answers held at once: Server-Sent Events (any request that"
        " asks for text/event-stream, any .../events route), a followed job output, a"
        " streamed /v1 answer",
    )
    llm_tokens_per_day: int | Literal["unlimited"] | None = Field(
        None,
        description="Prompt and completion tokens of /v1 answers in a UTC day, as the"
        " backends reported them (0: no /v1 use)",
    )

    @field_validator("requests_per_minute", "concurrent_streams", "llm_tokens_per_day",
                     mode="before")  # fmt: skip
    @classmethod
    def _in_range(cls, value: object, info: ValidationInfo) -> object:
        low, high = _RANGES[str(info.field_name)]
        if value is None or value == UNLIMITED:
            return value
        if isinstance(value, str) and value.isascii() and value.isdigit():  # from HPCGATE_*
            value = int(value)
        if type(value) is not int or not low <= value <= high:
            raise ValueError(f"must be a whole number from {low} to {high}, or {UNLIMITED!r}")
        return value


_RANGES = {
    "requests_per_minute": (1, USER_PER_MINUTE_MAX),
    "concurrent_streams": (1, STREAMS_MAX),
    "llm_tokens_per_day": (0, INT64_MAX),
}


class RateLimitsConfig(UserRateLimits):
    """The ``[rate_limits]`` table: every user's limits by default (none: no limit), and
    ``users``' own. A user is an hpcgate user name (an OpenID provider's client is the user
    its token maps to); an API key's requests count for its user too, on top of its own."""

    users: dict[UserKey, UserRateLimits] = Field(
        default_factory=dict, description="Per-user overrides, by hpcgate user name"
    )
    window_seconds: int = Field(
        60,
        ge=1,
        le=USER_WINDOW_MAX,
        description="The length of the window a user's requests_per_minute counts in, in"
        " seconds (every user's; an API key's and a function's stay a minute): 60 unless"
        " a test wants its window to turn sooner",
    )
    _resolved: dict[str, Allowance] = PrivateAttr(default_factory=dict)
    _default: Allowance = PrivateAttr(default_factory=Allowance)

    @model_validator(mode="after")
    def _resolve(self) -> RateLimitsConfig:
        self._default = _allowance(self, Allowance())
        self._resolved = {name: _allowance(own, self._default) for name, own in self.users.items()}
        return self

    @property
    def defaults(self) -> Allowance:
        """The limits of a user with none of its own."""
        return self._default

    def of(self, user: str) -> Allowance:
        """``user``'s limits: its own where it has them, else the defaults."""
        return self._resolved.get(user, self._default)

    @property
    def limited(self) -> bool:
        """Whether any user has any limit."""
        return self._default.limited or any(a.limited for a in self._resolved.values())


def _allowance(given: UserRateLimits, under: Allowance) -> Allowance:
    def one(value: int | str | None, default: int | None) -> int | None:
        if value == UNLIMITED:
            return None
        return default if value is None else int(value)

    return Allowance(
        one(given.requests_per_minute, under.requests_per_minute),
        one(given.concurrent_streams, under.concurrent_streams),
        one(given.llm_tokens_per_day, under.llm_tokens_per_day),
    )


# Asymmetric signatures only: no 'none', no HS* (a public key must never be an HMAC secret).
JwsAlgorithm = Literal[
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"
]
IssuerName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_-]{0,62}$")]
DEFAULT_ALGORITHMS: tuple[JwsAlgorithm, ...] = ("RS256", "ES256", "PS256", "EdDSA")
_LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost"})
ClaimName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.:/-]{1,64}$")]
ProjectName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_-]{0,62}$")]
#: ``{1}`` ... ``{9}`` in a rule's ``user`` and ``account``: the match's groups.
TEMPLATE_FIELD = re.compile(r"\{(\d)\}")
MAX_RULES = 256


class UserRule(BaseModel):
    """One ``[[auth.oidc.NAME.users]]`` rule: a token whose ``claim`` (a string) equals a
    value or matches a regular expression names this hpcgate user and Unix account."""

    model_config = ConfigDict(extra="forbid")

    claim: ClaimName = Field(description="The claim to test: a string claim of the token")
    equals: str | None = Field(
        None, min_length=1, max_length=256, description="The claim's value, exactly"
    )
    match: str | None = Field(
        None,
        min_length=1,
        max_length=256,
        description="A regular expression the whole value matches (values over 256"
        " characters never do); its groups fill {1} ... {9} in user and account. Refused"
        " at load if it could backtrack for long on a hostile value (re has no timeout): a"
        " varying repeat inside a repeat, a repeated alternation, a back-reference, or"
        " more than 3 varying repeats",
    )
    user: str = Field(
        "{1}",
        min_length=1,
        max_length=128,
        description="The hpcgate user: a name, or a template of the match's groups",
    )
    account: str | None = Field(
        None,
        min_length=1,
        max_length=128,
        description="The Unix account (multi-user mode): a name or a template; None: the"
        " hpcgate user's, as [users] says",
    )

    @model_validator(mode="after")
    def _rule(self) -> UserRule:
        if (self.equals is None) == (self.match is None):
            raise ValueError(f"rule on {self.claim!r}: give exactly one of 'equals' and 'match'")
        groups = 0
        if self.match is not None:
            try:
                groups = re.compile(self.match).groups
            except re.error as exc:
                message = f"match {self.match!r} is not a regular expression: {exc}"
                raise ValueError(message) from None
            if (risk := backtracking_risk(self.match)) is not None:
                raise ValueError(
                    f"match {self.match!r} could backtrack for too long on a hostile claim"
                    f" value (Python's re has no timeout): {risk}"
                )
        for template in (self.user, self.account or ""):
            for number in TEMPLATE_FIELD.findall(template):
                if not 1 <= int(number) <= groups:
                    raise ValueError(
                        f"{template!r} names group {{{number}}}; the rule has {groups} groups"
                    )
        _literal(self.user, USER_NAME_PATTERN, "an hpcgate user name")
        _literal(self.account, ACCOUNT_NAME_PATTERN, "a Unix account name")
        return self


def _literal(template: str | None, pattern: str, what: str) -> None:
    """A template without fields must already be a valid name."""
    fixed = template is not None and not TEMPLATE_FIELD.search(template)
    if fixed and not re.fullmatch(pattern, template or ""):
        raise ValueError(f"{template!r} is not {what}")


class GroupRule(BaseModel):
    """One ``[[auth.oidc.NAME.groups]]`` rule: a token whose ``claim`` (a string or a list
    of strings) holds ``value`` grants these scopes and project memberships besides its own."""

    model_config = ConfigDict(extra="forbid")

    claim: ClaimName = Field("groups", description="The claim naming the user's groups")
    value: str = Field(min_length=1, max_length=256, description="The group")
    scopes: list[Scope] = Field(
        default_factory=list, max_length=8, description="Scopes the group grants"
    )
    projects: list[ProjectName] = Field(
        default_factory=list, max_length=64, description="Projects the group's members are in"
    )
    role: Role = Field(
        Role.MEMBER,
        description="Their role in those projects (a stored membership with a higher role"
        " wins: the caller has the higher of the two)",
    )

    @model_validator(mode="after")
    def _grants(self) -> GroupRule:
        if not self.scopes and not self.projects:
            raise ValueError(f"group {self.value!r}: grant scopes, projects or both")
        return self


class OidcIssuer(BaseModel):
    """One ``[auth.oidc.NAME]`` table: an OpenID provider whose access tokens are trusted."""

    model_config = ConfigDict(extra="forbid")

    issuer: str = Field(
        max_length=2048,
        description="The issuer URL, exactly as the provider's discovery document and its"
        " tokens' 'iss' spell it; https, or http on loopback with allow_insecure_issuer",
    )
    audience: str = Field(
        min_length=1, max_length=256, description="The 'aud' a token must hold for hpcgate"
    )
    username_claim: str = Field(
        "preferred_username", min_length=1, max_length=64, description="The hpcgate user name"
    )
    scopes_claim: str = Field(
        "scope",
        min_length=1,
        max_length=64,
        description="Scopes: a space-separated string or a list; names that are not"
        " hpcgate scopes are ignored",
    )
    scopes: list[Scope] = Field(
        default_factory=lambda: sorted(DEFAULT_SCOPES),
        description="The hpcgate scopes this provider may grant; 'admin' only if listed",
    )
    algorithms: list[JwsAlgorithm] = Field(
        default_factory=lambda: list(DEFAULT_ALGORITHMS),
        min_length=1,
        description="The signature algorithms accepted from this provider",
    )
    clock_skew: int = Field(30, ge=0, le=300, description="Seconds of leeway on exp/nbf/iat")
    jwks_refetch_seconds: float = Field(
        10.0,
        ge=0,
        le=3600,
        description="An unknown key id refetches the provider's keys at most this often",
    )
    introspection_client_id: str | None = Field(
        None,
        max_length=256,
        description="With the secret: opaque (non-JWT) tokens are checked by RFC 7662"
        " introspection at the provider, as this client",
    )
    introspection_client_secret: SecretStr | None = Field(None, max_length=1024)
    allow_insecure_issuer: bool = Field(
        False, description="Trust an http:// issuer on loopback (tests and local providers)"
    )
    users: list[UserRule] = Field(
        default_factory=list,
        max_length=MAX_RULES,
        description="Mapping rules, tried in order: the first that matches names the user"
        " (and Unix account); none matching refuses the token (403). No rules: the"
        " username_claim names the user",
    )
    groups: list[GroupRule] = Field(
        default_factory=list,
        max_length=MAX_RULES,
        description="Every rule whose group the token holds adds its scopes and projects",
    )
    service_accounts: bool = Field(
        True,
        description="A client's own token (client credentials) is the user 'client:<id>'"
        " with its token's scopes; false: such tokens are refused",
    )
    client_claim: ClaimName = Field(
        "client_id", description="The claim naming the OAuth client (RFC 9068: client_id)"
    )
    cli_client_id: str | None = Field(
        None,
        min_length=1,
        max_length=256,
        pattern=r"^[A-Za-z0-9_.:@-]+$",
        description="The provider's public client for 'hpcgate login --oidc' (the device"
        " flow, RFC 8628), told to clients by GET /api/v1/auth/providers; None: not offered",
    )
    cli_scope: str | None = Field(
        None,
        min_length=1,
        max_length=1024,
        pattern=r"^[\x21\x23-\x5B\x5D-\x7E]+( [\x21\x23-\x5B\x5D-\x7E]+)*$",
        description="The scope the command line asks for; default: openid offline_access"
        " and this provider's scopes",
    )
    web_client_id: str | None = Field(
        None,
        min_length=1,
        max_length=256,
        pattern=r"^[A-Za-z0-9_.:@-]+$",
        description="The provider's confidential client for signing in to the web interface"
        " (authorization code + PKCE, its redirect URI <gateway>/ui/signin/oidc/NAME/callback);"
        " None: the sign-in page offers only tokens for this provider",
    )
    web_client_secret: SecretStr | None = Field(
        None, max_length=1024, description="The web client's secret (client_secret_basic)"
    )
    web_scope: str | None = Field(
        None,
        min_length=1,
        max_length=1024,
        pattern=r"^[\x21\x23-\x5B\x5D-\x7E]+( [\x21\x23-\x5B\x5D-\x7E]+)*$",
        description="The scope the web sign-in asks for; default: openid offline_access and"
        " this provider's scopes",
    )
    service_account_claim: ClaimName | None = Field(
        None,
        description="A claim only a client's own tokens hold; None: RFC 9068's mark (no"
        " 'sub', or 'sub' equal to the client id)",
    )

    @model_validator(mode="after")
    def _transport(self) -> OidcIssuer:
        url = urlsplit(self.issuer)
        loopback = url.scheme == "http" and url.hostname in _LOOPBACK
        if url.scheme != "https" and not (loopback and self.allow_insecure_issuer):
            raise ValueError(
                f"issuer {self.issuer!r}: must be https (http only on 127.0.0.1, [::1] or"
                " localhost, with allow_insecure_issuer = true)"
            )
        if url.query or url.fragment or not url.hostname:
            raise ValueError(f"issuer {self.issuer!r}: a URL with a host, no query or fragment")
        if (self.web_client_id is None) != (self.web_client_secret is None):
            raise ValueError("the web sign-in needs both web_client_id and web_client_secret")
        if (self.introspection_client_id is None) != (self.introspection_client_secret is None):
            raise ValueError("introspection needs both introspection_client_id and _secret")
        for rule in self.groups:
            beyond = sorted(set(rule.scopes) - set(self.scopes))
            if beyond:
                raise ValueError(
                    f"group {rule.value!r} grants {beyond}, which this provider's 'scopes'"
                    " do not list"
                )
        return self


class AuthConfig(BaseModel):
    """The ``[auth]`` table: who besides hpcgate's own tokens may call."""

    model_config = ConfigDict(extra="forbid")

    oidc: dict[IssuerName, OidcIssuer] = Field(
        default_factory=dict, description="Trusted OpenID providers, by a name of the admin's"
    )


class FunctionsConfig(BaseModel):
    """The ``[functions]`` table: how long ended invocations are kept. The gateway keeps
    each invocation's row (its state and final event; the events themselves are its
    worker's, which drops them 600 s after their last read). A running one is never
    dropped."""

    model_config = ConfigDict(extra="forbid")

    keep_invocations_days: float = Field(
        7.0, gt=0, le=3650, description="An ended invocation is forgotten this long after"
    )
    keep_invocations: int = Field(
        1000,
        ge=1,
        le=1_000_000,
        description="Ended invocations kept per function, the newest; older ones are forgotten",
    )
    prune_seconds: float = Field(
        600.0, gt=0, le=86400, description="Seconds between two rounds of forgetting"
    )


class AuditConfig(BaseModel):
    """The ``[audit]`` table: how the audit log of state-changing requests is written and
    how long it is kept. Records are only ever added; the retention prune is the one way
    any leave the table."""

    model_config = ConfigDict(extra="forbid")

    keep_days: float = Field(
        365.0, gt=0, le=36500, description="A record is deleted this long after its request"
    )
    prune_seconds: float = Field(
        3600.0, gt=0, le=86400, description="Seconds between two rounds of the retention prune"
    )
    flush_seconds: float = Field(
        0.5,
        gt=0,
        le=60,
        description="Records wait at most this long in memory before a batch is written",
    )


class ConsentConfig(BaseModel):
    """The ``[consent]`` table: what needs its user's approval out of band. Such a request
    does nothing: it is answered 202 with a consent request, and the credential it holds
    (the new token, the client's token) is refused until the user approves it with another
    credential of theirs (see :mod:`hpcgate.consent`)."""

    model_config = ConfigDict(extra="forbid")

    token_scopes: list[Scope] = Field(
        default_factory=list,
        max_length=8,
        description="A token made through the API holding any of these scopes is held",
    )
    clients: list[Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.:@-]{1,256}$")]] = Field(
        default_factory=list,
        max_length=256,
        description="Each new token of a provider issued to one of these OAuth clients is"
        " held: its first request asks its user, and it acts only once approved",
    )
    pending_seconds: int = Field(
        900, ge=10, le=7 * 86400, description="An undecided request lapses after this long"
    )
    pending_per_user: int = Field(
        20, ge=1, le=1000, description="Undecided requests one user may have at once"
    )
    keep_days: float = Field(
        30.0,
        ge=1,
        le=3650,
        description="A decided request is deleted this long after its decision, a lapsed one"
        " this long after it lapsed (a held token then revoked, if it is not already)",
    )
    prune_seconds: float = Field(
        600.0, ge=1, le=86400, description="Seconds between two rounds of that deletion"
    )


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
    max_extract_members: int = Field(
        1_000_000, ge=1, description="Most members one archive extraction makes"
    )
    max_extract_bytes: int = Field(
        64 << 30, ge=1, description="Most bytes of file contents one archive extraction writes"
    )
    token_cache_seconds: float = Field(
        5.0, ge=0, description="How long a verified token is trusted without a database read"
    )
    systems: dict[SystemName, SystemConfig] = Field(default_factory=_default_systems)
    users: UsersConfig = Field(default_factory=UsersConfig)
    services: dict[ServiceName, ServiceConfig] = Field(default_factory=dict)
    service_ports: tuple[int, int] = Field(
        (20000, 32767),
        description="The range replicas' ports are chosen from (first, last); the default lies"
        " below Linux's ephemeral ports (32768-60999), which outgoing connections take",
    )
    service_wait_seconds: float = Field(
        120.0, gt=0, le=3600, description="How long a proxied request waits for a ready replica"
    )
    service_interval: float = Field(
        1.0, gt=0, le=60, description="Seconds between the service controller's rounds"
    )
    leader_seconds: float = Field(
        1.0,
        ge=0.2,
        le=5,
        description="Gateways on one PostgreSQL: seconds between two checks of which one"
        " leads (runs the service controller and the shared housekeeping); a dead"
        " leader's place is taken within about this",
    )
    service_limits: ServiceLimits = Field(default_factory=ServiceLimits)
    auth: AuthConfig = Field(default_factory=AuthConfig)
    functions: FunctionsConfig = Field(default_factory=FunctionsConfig)
    rate_limits: RateLimitsConfig = Field(default_factory=RateLimitsConfig)
    audit: AuditConfig = Field(default_factory=AuditConfig)
    consent: ConsentConfig = Field(default_factory=ConsentConfig)
    ui: UiConfig = Field(default_factory=UiConfig)

    @model_validator(mode="after")
    def _services(self) -> Settings:
        low, high = self.service_ports
        if not 1024 <= low <= high <= 65535:
            raise ValueError("service_ports must be [first, last] within 1024-65535")
        for name, service in self.services.items():
            if service.system not in self.systems:
                raise ValueError(f"service {name!r}: no system {service.system!r}")
            if service.max_replicas > high - low + 1:
                raise ValueError(
                    f"service {name!r}: max_replicas {service.max_replicas} exceeds the"
                    f" {high - low + 1} ports of service_ports, one per replica"
                )
        return self

    @model_validator(mode="after")
    def _fill_defaults(self) -> Settings:
        self.home = self.home.expanduser().absolute()
        if not self.database_url:
            refuse_orphaned_root_home(self.home)
            self.database_url = f"sqlite+aiosqlite:///{self.home / 'hpcgate.db'}"
        for name, system in self.systems.items():
            if system.spool is None:
                system.spool = self.home / "systems" / name / "spool"
            if system.scheduler == "embedded":
                # Each user's own directory, not the gateway account's home: a token holder
                # sees its jobs' files and nothing else of this machine.
                own = str(self.home / "work" / "{user}")
                system.roots = system.roots or [own]
                system.workdir = system.workdir or own
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
