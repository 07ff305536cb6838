"""Principal → Unix account mapping, on this machine's real account database."""

from __future__ import annotations

import os
import pwd
from pathlib import Path

import pytest

from hpcgate.accounts import Accounts, multi_user
from hpcgate.config import Settings, SshConfig, SystemConfig, UsersConfig
from hpcgate.gateway import Gateway
from hpcgate.model.errors import Forbidden
from hpcgate.model.principal import DEFAULT_SCOPES, Principal
from hpcgate.transports.local import LocalTransport


def who(user: str) -> Principal:
    return Principal(user, DEFAULT_SCOPES, "t")


def a_person() -> pwd.struct_passwd:
    """Some ordinary account here (uid >= 1000, not nobody), or skip."""
    for entry in pwd.getpwall():
        if 1000 <= entry.pw_uid < 65534:
            return entry
    pytest.skip("this machine has no ordinary account")


HERE = LocalTransport()  # this machine's user database


async def test_single_user_mode_maps_no_one() -> None:
    assert await Accounts(UsersConfig(), multi=False).resolve(who("root"), HERE) is None


@pytest.mark.parametrize("name", ["root", "daemon", "nobody", "no-such-account-here"])
async def test_root_system_and_missing_accounts_are_refused(name: str) -> None:
    accounts = Accounts(UsersConfig(), multi=True)
    with pytest.raises(Forbidden):
        await accounts.resolve(who(name), HERE)


async def test_map_and_same_name() -> None:
    person = a_person()
    mapped = Accounts(UsersConfig(map={"x@example.org": person.pw_name}), multi=True)
    account = await mapped.resolve(who("x@example.org"), HERE)
    assert account is not None
    assert (account.name, account.uid, account.home) == (
        person.pw_name,
        person.pw_uid,
        person.pw_dir,
    )
    assert person.pw_gid in account.groups
    strict = Accounts(UsersConfig(same_name=False), multi=True)
    with pytest.raises(Forbidden, match="not mapped"):
        await strict.resolve(who(person.pw_name), HERE)


async def test_a_map_cannot_reach_root() -> None:
    accounts = Accounts(UsersConfig(map={"admin": "root"}), multi=True)
    with pytest.raises(Forbidden, match="system account"):
        await accounts.resolve(who("admin"), HERE)


async def test_a_user_with_no_account_is_refused_saying_why() -> None:
    accounts = Accounts(UsersConfig(), multi=True)
    with pytest.raises(Forbidden, match=r"no Unix account .* never as root"):
        await accounts.resolve(who("no-such-account-here"), HERE)


async def test_the_fallback_account_is_shared_by_users_with_no_account() -> None:
    person = a_person()
    accounts = Accounts(UsersConfig(fallback=person.pw_name), multi=True)
    account = await accounts.resolve(who("no-such-account-here"), HERE)
    assert account is not None and (account.name, account.shared) == (person.pw_name, True)
    own = await accounts.resolve(who(person.pw_name), HERE)  # an account of its own
    assert own is not None and not own.shared
    for refused in ("root", "daemon"):  # a system account is never replaced by the fallback
        with pytest.raises(Forbidden, match="system account"):
            await accounts.resolve(who(refused), HERE)


def test_auto_mode() -> None:
    root = os.geteuid() == 0
    assert multi_user(UsersConfig(mode="auto"), per_user_systems=True) is root
    assert multi_user(UsersConfig(mode="auto"), per_user_systems=False) is False
    assert multi_user(UsersConfig(mode="multi"), per_user_systems=False) is True
    assert multi_user(UsersConfig(mode="single"), per_user_systems=True) is False


@pytest.mark.skipif(os.geteuid() != 0, reason="about a gateway that runs as root")
@pytest.mark.parametrize(
    ("scheduler", "mode", "words"),
    [("slurm", "single", "would run as root"), ("embedded", "single", "would run as root")],
)
def test_root_gateway_refuses_to_run_jobs_as_root(
    tmp_path: Path, scheduler: str, mode: str, words: str
) -> None:
    settings = Settings(
        home=tmp_path,
        systems={"s": SystemConfig(scheduler=scheduler)},
        users=UsersConfig(mode=mode),
    )
    with pytest.raises(ValueError, match=words):
        Gateway(settings)


def forced_system(tmp_path: Path) -> SystemConfig:
    """A Slurm system behind a functional account (identity = 'forced')."""
    (tmp_path / "known_hosts").write_text("")
    (tmp_path / "key").write_text("")
    ssh = SshConfig(
        host="login.example.org",
        known_hosts=tmp_path / "known_hosts",
        identity="forced",
        key=tmp_path / "key",
        user="hpcgate-svc",
    )
    return SystemConfig(scheduler="slurm", transport="ssh", ssh=ssh, roots=["{home}/{user}"])


def test_multi_user_mode_refuses_a_functional_account(tmp_path: Path) -> None:
    """Its mapping would name accounts that a forced system never logs in as."""
    settings = Settings(
        home=tmp_path, systems={"s": forced_system(tmp_path)}, users=UsersConfig(mode="multi")
    )
    with pytest.raises(ValueError, match="run as the one functional account 'hpcgate-svc'"):
        Gateway(settings)


def test_auto_mode_is_single_user_with_only_functional_accounts(tmp_path: Path) -> None:
    """Even as root: everyone's jobs run as the functional account, never as root."""
    gateway = Gateway(Settings(home=tmp_path, systems={"s": forced_system(tmp_path)}))
    assert not gateway.accounts.multi
    mixed = {"s": forced_system(tmp_path), "cluster": SystemConfig(scheduler="slurm")}
    if os.geteuid() == 0:  # multi-user for the local Slurm, which the forced system refuses
        with pytest.raises(ValueError, match=r"set \[users\] mode = 'single'"):
            Gateway(Settings(home=tmp_path, systems=mixed))
