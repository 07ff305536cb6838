"""Who the gateway logs in as over SSH, and with what key.

Three identity modes (``[systems.NAME.ssh] identity``):

- :class:`CertificateAuthority` (``ca``): hpcgate holds the CA's private key, makes one
  ephemeral ed25519 key pair per process, and signs for each account an OpenSSH user
  certificate valid for a few minutes (``cert_minutes``), with the account as its only
  principal and no forwarding, pty or user-rc rights (port forwarding only for the
  connections that carry streams, :mod:`.ssh_stream`). The host's sshd trusts the CA
  (``TrustedUserCAKeys``). No long-lived user key exists anywhere; a certificate is only
  checked at login, so a pooled connection outlives the certificate it was opened with.
- :class:`KeyDirectory` (``keys``): the private key of account NAME is ``keys_dir/NAME``,
  read at each login (so a replaced key is used from the next connection on). A key file
  that its group or others can read is refused.
- :class:`FunctionalKey` (``forced``): one key file, ``key``, for the one functional account
  every command logs in as (and for a jump host); the cluster runs only hpcgate-forced for
  it. Read at start-up (a bad key stops the start) and again at each login (a replaced key
  is used from the next connection on); refused if its group or others can read it.

No constructor does I/O: :meth:`Identity.start` reads what is needed at start-up.
"""

from __future__ import annotations

import os
import secrets
import stat
import time
from pathlib import Path
from typing import Protocol

import asyncssh
from asyncssh.public_key import SSHOpenSSHCertificate

from hpcgate.config import SshConfig
from hpcgate.model.errors import Forbidden, TransportError

ClientKey = asyncssh.SSHKey | tuple[asyncssh.SSHKey, asyncssh.SSHCertificate]

RENEW_BEFORE = 60.0  # a cached certificate is replaced this long before it expires
BACKDATE = 60  # seconds a certificate is valid before it was made: clocks drift


class Identity(Protocol):
    def start(self) -> None:
        """Read what logins need (keys, directories); raises TransportError if it cannot."""
        ...

    def client_keys(self, login: str, forwarding: bool = False) -> list[ClientKey]:
        """The keys (and certificates) to log in as ``login`` with; ``forwarding`` asks for
        one that may open TCP tunnels (to log in to a jump host)."""
        ...


def identity_for(config: SshConfig, system: str) -> Identity:
    """The identity the configuration names (no I/O)."""
    if config.identity == "ca":
        assert config.ca_key is not None  # checked by SshConfig
        return CertificateAuthority(config.ca_key, config.cert_minutes * 60, system)
    if config.identity == "forced":
        assert config.key is not None
        return FunctionalKey(config.key, config.user)
    assert config.keys_dir is not None
    return KeyDirectory(config.keys_dir)


class CertificateAuthority:
    """Issues short-lived user certificates for one ephemeral key, cached per account."""

    def __init__(self, ca_key: Path, lifetime: float, system: str) -> None:
        self._path = ca_key
        self._lifetime = lifetime
        self._system = system
        self._ca: asyncssh.SSHKey | None = None
        self._user_key: asyncssh.SSHKey | None = None
        self._certificates: dict[tuple[str, bool], tuple[float, SSHOpenSSHCertificate]] = {}

    def start(self) -> None:
        if self._ca is None:
            self._ca = read_private_key(self._path, "the CA key")
            self._user_key = asyncssh.generate_private_key("ssh-ed25519")

    def client_keys(self, login: str, forwarding: bool = False) -> list[ClientKey]:
        self.start()
        assert self._user_key is not None
        return [(self._user_key, self.certificate(login, forwarding))]

    def certificate(self, login: str, forwarding: bool = False) -> SSHOpenSSHCertificate:
        """A certificate for ``login`` valid for at least another minute."""
        now = time.time()
        cached = self._certificates.get((login, forwarding))
        if cached is not None and cached[0] - RENEW_BEFORE > now:
            return cached[1]
        expires = int(now + self._lifetime)
        certificate = self._sign(login, forwarding, int(now) - BACKDATE, expires)
        self._certificates[(login, forwarding)] = (expires, certificate)
        return certificate

    def _sign(self, login: str, forwarding: bool, after: int, before: int) -> SSHOpenSSHCertificate:
        assert self._ca is not None and self._user_key is not None
        return self._ca.generate_user_certificate(
            self._user_key,
            f"hpcgate:{self._system}:{login}",  # sshd logs it with each login
            serial=secrets.randbits(63),
            principals=[login],
            valid_after=after,
            valid_before=before,
            permit_x11_forwarding=False,
            permit_agent_forwarding=False,
            permit_port_forwarding=forwarding,
            permit_pty=False,
            permit_user_rc=False,
        )


class KeyDirectory:
    """One private key file per account: ``directory/NAME``."""

    def __init__(self, directory: Path) -> None:
        self._directory = directory

    def start(self) -> None:
        if not os.access(self._directory, os.R_OK | os.X_OK):
            raise TransportError(f"the SSH keys directory cannot be read: {self._directory}")

    def client_keys(self, login: str, forwarding: bool = False) -> list[ClientKey]:
        if login in ("", ".", "..") or "/" in login:
            raise Forbidden(f"account {login!r} cannot have an SSH key")
        path = self._directory / login
        if not path.exists():
            raise Forbidden(f"account {login!r} has no SSH key on this gateway")
        return [read_private_key(path, f"the SSH key of account {login!r}")]


class FunctionalKey:
    """The private key of the one functional account, ``user``."""

    def __init__(self, path: Path, user: str) -> None:
        self._path = path
        self._user = user

    def start(self) -> None:
        self._read()

    def client_keys(self, login: str, forwarding: bool = False) -> list[ClientKey]:
        return [self._read()]  # for a jump host too: this mode has no other key

    def _read(self) -> asyncssh.SSHKey:
        return read_private_key(self._path, f"the SSH key of the functional account {self._user!r}")


def read_private_key(path: Path, what: str) -> asyncssh.SSHKey:
    """An unencrypted private key from a file that only its owner can read."""
    try:
        mode = path.stat().st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise TransportError(
                f"{what} ({path}) is readable by others (mode {stat.S_IMODE(mode):o}):"
                " it is refused; chmod 600 it"
            )
        return asyncssh.read_private_key(path)
    except OSError as exc:
        raise TransportError(f"{what} ({path}) cannot be read: {exc.strerror}") from exc
    except (asyncssh.KeyImportError, asyncssh.KeyEncryptionError) as exc:
        raise TransportError(f"{what} ({path}) is not a usable private key: {exc}") from exc
