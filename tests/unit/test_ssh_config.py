"""The [systems.NAME.ssh] table, the SSH command line and the SSH identities: no server."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import asyncssh
import pytest
from pydantic import ValidationError

from hpcgate.accounts import Account
from hpcgate.config import SshConfig, SystemConfig
from hpcgate.model.commands import Command
from hpcgate.model.errors import BadRequest, Forbidden, TransportError
from hpcgate.transports.ssh import SshTransport, command_line, parse_jump_host
from hpcgate.transports.ssh_identity import CertificateAuthority, FunctionalKey, KeyDirectory
from tests.support.hostile import HOSTILE_ARGV


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text("[127.0.0.1]:2222 ssh-ed25519 AAAA\n")
    ca = tmp_path / "ca"
    asyncssh.generate_private_key("ssh-ed25519").write_private_key(ca)
    ca.chmod(0o600)
    keys = tmp_path / "keys"
    keys.mkdir()
    return {"known_hosts": known_hosts, "ca_key": ca, "keys_dir": keys}


def ssh(files: dict[str, Path], **changes: Any) -> dict[str, Any]:
    """A valid table, with ``changes`` (None removes a key)."""
    table: dict[str, Any] = {
        "host": "login.example.org",
        "known_hosts": files["known_hosts"],
        "identity": "ca",
        "ca_key": files["ca_key"],
        "user": "hpcgate",
    }
    return {key: value for key, value in {**table, **changes}.items() if value is not None}


def test_a_ca_system(files: dict[str, Path]) -> None:
    system = SystemConfig(scheduler="slurm", transport="ssh", ssh=ssh(files))
    assert system.ssh is not None
    assert (system.ssh.port, system.ssh.cert_minutes, system.ssh.max_connections) == (22, 5, 32)
    assert (system.ssh.idle_seconds, system.ssh.keepalive_seconds) == (60, 15)


def test_a_keys_system(files: dict[str, Path]) -> None:
    table = ssh(files, identity="keys", ca_key=None, keys_dir=files["keys_dir"])
    system = SystemConfig(scheduler="pbs", transport="ssh", ssh=table)
    assert system.ssh is not None and system.ssh.keys_dir == files["keys_dir"]


def test_a_forced_system(files: dict[str, Path]) -> None:
    table = ssh(files, identity="forced", ca_key=None, key=files["ca_key"], user="hpcgate-svc")
    roots = ["{home}/files/{user}", "/scratch/shared/{user}"]
    system = SystemConfig(scheduler="slurm", transport="ssh", ssh=table, roots=roots)
    assert system.ssh is not None and system.ssh.key == files["ca_key"]
    assert system.functional_account == "hpcgate-svc"
    per_user = SystemConfig(scheduler="slurm", transport="ssh", ssh=ssh(files))
    assert per_user.functional_account is None
    assert SystemConfig().functional_account is None


@pytest.mark.parametrize("roots", [None, ["{home}"], ["{home}/{user}", "/scratch"]])
def test_a_forced_system_needs_a_root_per_user(files: dict[str, Path], roots: Any) -> None:
    table = ssh(files, identity="forced", ca_key=None, key=files["ca_key"], user="svc")
    given = {} if roots is None else {"roots": roots}
    with pytest.raises(ValidationError, match="give each root a '\\{user\\}'"):
        SystemConfig(scheduler="slurm", transport="ssh", ssh=table, **given)


NO_TABLE: dict[str, Any] = {"no": "table"}


@pytest.mark.parametrize(
    ("system", "table", "message"),
    [
        ({}, NO_TABLE, "transport = 'ssh' needs an [ssh] table"),
        ({"transport": "local"}, {}, "an [ssh] table is only for transport = 'ssh'"),
        ({"scheduler": "embedded"}, {}, "needs scheduler = 'slurm' or 'pbs'"),
        ({}, {"ca_key": None}, "identity = 'ca' needs ca_key"),
        ({}, {"keys_dir": "keys_dir"}, "identity = 'ca' needs ca_key (and takes no keys_dir"),
        ({}, {"identity": "keys", "ca_key": None}, "identity = 'keys' needs keys_dir"),
        ({}, {"identity": "keys", "keys_dir": "keys_dir"}, "(and takes no ca_key or key)"),
        ({}, {"identity": "forced", "ca_key": None}, "identity = 'forced' needs key"),
        ({}, {"identity": "forced", "key": "ca_key"}, "(and takes no ca_key or keys_dir)"),
        ({}, {"key": "ca_key"}, "identity = 'ca' needs ca_key (and takes no keys_dir or key)"),
        ({}, {"identity": "forced", "ca_key": None, "key": "/nonexistent"}, "key"),
        ({}, {"identity": "password"}, "identity"),
        ({}, {"user": "root"}, "never logs in as root"),
        ({}, {"user": "Bad User"}, "user"),
        ({}, {"known_hosts": "/nonexistent/known_hosts"}, "known_hosts"),
        ({}, {"known_hosts": None}, "known_hosts"),
        ({}, {"jump_host": "a b@c"}, "jump_host"),
        ({}, {"jump_host": "bastion:22:33"}, "jump_host"),
        ({}, {"sessions_per_connection": 1}, "sessions_per_connection"),
        ({}, {"port": 0}, "port"),
        ({}, {"strict": False}, "strict"),
    ],
)
def test_bad_combinations_are_refused(
    files: dict[str, Path], system: dict[str, Any], table: dict[str, Any], message: str
) -> None:
    """One mistake each, named in the one error it causes."""
    config: dict[str, Any] = {"scheduler": "slurm", "transport": "ssh", **system}
    if table is not NO_TABLE:
        changes = {key: files.get(str(value), value) for key, value in table.items()}
        config["ssh"] = {
            key: value for key, value in (ssh(files) | changes).items() if value is not None
        }
    with pytest.raises(ValidationError, match=re.escape(message)) as caught:
        SystemConfig(**config)
    assert len(caught.value.errors()) == 1


def test_jump_hosts_parse() -> None:
    assert parse_jump_host("bastion") == (None, "bastion", 22)
    assert parse_jump_host("me@bastion.example.org:2200") == ("me", "bastion.example.org", 2200)
    assert parse_jump_host("[::1]:2222") == (None, "::1", 2222)
    assert parse_jump_host("me@[fe80::1]") == ("me", "fe80::1", 22)


@pytest.mark.parametrize("word", HOSTILE_ARGV)
def test_the_command_line_splits_back_into_the_argv(word: str) -> None:
    argv = ("printf", "%s\\0", word, f"x{word}y")
    assert shlex.split(command_line(Command(argv))) == list(argv)


def test_variables_go_in_front_through_env() -> None:
    command = Command(("sbatch", "--parsable"), env={"A": "1; reboot", "B_2": "$(id)\n"})
    line = command_line(command, timeout=30.2)
    assert shlex.split(line) == [
        *("timeout", "-s", "KILL", "31"),
        *("env", "--", "A=1; reboot", "B_2=$(id)\n"),
        *("sbatch", "--parsable"),
    ]


@pytest.mark.parametrize("name", ["A=B", "1A", "", "A B", "A;B", "-u"])
def test_bad_variable_names_are_refused(name: str) -> None:
    with pytest.raises(BadRequest):
        command_line(Command(("true",), env={name: "x"}))


def test_a_certificate_names_the_account(files: dict[str, Path]) -> None:
    ca = CertificateAuthority(files["ca_key"], 300, "cluster")
    ca.start()
    cert = ca.certificate("alice")
    (pair,) = ca.client_keys("alice")
    assert isinstance(pair, tuple) and pair[1] is cert
    assert pair[0].public_data == cert.key.public_data  # the process's one ephemeral key
    assert cert.principals == ["alice"]
    assert cert.signing_key.public_data == asyncssh.read_private_key(files["ca_key"]).public_data
    assert "permit-port-forwarding" not in cert.options and "permit-pty" not in cert.options
    assert ca.certificate("alice") is cert  # cached while it has more than a minute left
    assert ca.certificate("bob") is not cert
    assert "permit-port-forwarding" in ca.certificate("alice", forwarding=True).options


def test_a_short_lived_certificate_is_made_anew(files: dict[str, Path]) -> None:
    ca = CertificateAuthority(files["ca_key"], 30, "cluster")
    assert ca.client_keys("alice") != ca.client_keys("alice")


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644])
def test_readable_key_files_are_refused(files: dict[str, Path], mode: int) -> None:
    files["ca_key"].chmod(mode)
    with pytest.raises(TransportError, match="readable by others"):
        CertificateAuthority(files["ca_key"], 300, "cluster").start()
    key = files["keys_dir"] / "alice"
    key.write_bytes(files["ca_key"].read_bytes())
    key.chmod(mode)
    with pytest.raises(TransportError, match="readable by others"):
        KeyDirectory(files["keys_dir"]).client_keys("alice")
    with pytest.raises(TransportError, match=r"functional account 'svc'.*readable by others"):
        FunctionalKey(key, "svc").start()


def test_a_functional_key_serves_every_login(files: dict[str, Path]) -> None:
    """One key for the functional account (and a jump host): the transport logs in as
    nobody else in this mode, and the key file is read again at each login."""
    key = FunctionalKey(files["ca_key"], "svc")
    key.start()
    [first] = key.client_keys("svc")
    assert isinstance(first, asyncssh.SSHKey)
    assert first.public_data == asyncssh.read_private_key(files["ca_key"]).public_data
    replacement = asyncssh.generate_private_key("ssh-ed25519")
    replacement.write_private_key(files["ca_key"])
    [second] = key.client_keys("gw", forwarding=True)
    assert isinstance(second, asyncssh.SSHKey)
    assert second.public_data == replacement.public_data


def test_a_key_directory(files: dict[str, Path]) -> None:
    keys = KeyDirectory(files["keys_dir"])
    keys.start()
    (files["keys_dir"] / "alice").write_bytes(files["ca_key"].read_bytes())
    (files["keys_dir"] / "alice").chmod(0o600)
    [key] = keys.client_keys("alice")
    assert isinstance(key, asyncssh.SSHKey)
    for nobody in ("bob", "..", "../keys/alice", ""):
        with pytest.raises(Forbidden):
            keys.client_keys(nobody)
    (files["keys_dir"] / "carol").write_text("not a key")
    (files["keys_dir"] / "carol").chmod(0o600)
    with pytest.raises(TransportError, match="not a usable private key"):
        keys.client_keys("carol")


def test_every_caller_logs_in_as_the_functional_account(files: dict[str, Path]) -> None:
    table = ssh(files, identity="forced", ca_key=None, key=files["ca_key"], user="svc")
    transport = SshTransport("cluster", SshConfig(**table))
    alice = Account("alice", 1001, 1001, (1001,), "/home/alice")
    assert transport.login(alice) == transport.login(None) == "svc"
    assert SshTransport("cluster", SshConfig(**ssh(files))).login(alice) == "alice"


def test_streams_go_through_the_relay_only_for_a_functional_account(
    files: dict[str, Path],
) -> None:
    assert SshConfig(**ssh(files)).stream == "auto"
    assert SshConfig(**ssh(files, stream="forward")).stream == "forward"
    with pytest.raises(ValidationError, match="stream = 'relay' needs identity = 'forced'"):
        SshConfig(**ssh(files, stream="relay"))
    key = files["ca_key"]
    forced = SshConfig(**ssh(files, identity="forced", ca_key=None, key=key, stream="relay"))
    assert forced.stream == "relay"
    with pytest.raises(ValidationError, match="'auto', 'forward' or 'relay'"):
        SshConfig(**ssh(files, stream="tunnel"))
