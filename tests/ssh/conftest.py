"""The SSH tier: a real OpenSSH server (scripts/sshd) on 127.0.0.1 with users alice and bob.

The shared server is started here if it does not answer (needs root). Its CA key and the
users' test keys are root's, so the tier runs as root. In CI (``CI`` set) a server that
cannot start, or keys that cannot be read, fail the run; elsewhere the tier is skipped. A
test that restarts sshd runs one of its own (``own_sshd``): other tests use the shared one
meanwhile.

A functional account, ``hpcgate-svc``, is made here too (``functional_account``): its keys
run only hpcgate-forced (``restrict,command=...`` in its authorized_keys).
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from hpcgate.transports.ssh import SshTransport
from tests.support.sshd import (
    FUNCTIONAL,
    FunctionalAccount,
    Sshd,
    answering,
    cannot_run,
    read_env,
    run_script,
)


@pytest.fixture(scope="session")
def sshd() -> Sshd:
    """The test sshd of ``scripts/sshd``, started if it does not answer."""
    if not answering():
        if os.geteuid() != 0:
            cannot_run("no test sshd answers and starting one needs root (scripts/sshd up)")
        done = run_script("up")
        if done.returncode != 0 or not answering():
            pytest.fail(f"scripts/sshd up failed:\n{done.stderr[-4000:]}")
    env = read_env()
    if not os.access(env.ca, os.R_OK) or not os.access(env.key("alice"), os.R_OK):
        cannot_run(f"{env.ca} and the users' test keys are readable by root only")
    return env


@pytest.fixture
async def transports(sshd: Sshd) -> AsyncIterator[list[SshTransport]]:
    """Transports made by a test; each is closed at its end."""
    made: list[SshTransport] = []
    yield made
    for transport in made:
        await transport.close()


@pytest.fixture(scope="session")
def functional_account(sshd: Sshd, tmp_path_factory: pytest.TempPathFactory) -> FunctionalAccount:
    """``hpcgate-svc`` (created if missing), its authorized_keys emptied for this session."""
    try:
        pwd.getpwnam(FUNCTIONAL)
    except KeyError:
        subprocess.run(["useradd", "-m", "-s", "/bin/bash", FUNCTIONAL], check=True)
    subprocess.run(["usermod", "-p", "*", FUNCTIONAL], check=True)  # not locked: UsePAM no
    home = Path(pwd.getpwnam(FUNCTIONAL).pw_dir)
    account = FunctionalAccount(FUNCTIONAL, home, tmp_path_factory.mktemp("functional"))
    ssh_dir = account.authorized_keys.parent
    ssh_dir.mkdir(mode=0o700, exist_ok=True)
    account.authorized_keys.write_text("")
    subprocess.run(["chown", "-R", f"{FUNCTIONAL}:", str(ssh_dir)], check=True)
    account.authorized_keys.chmod(0o600)
    return account


@pytest.fixture
def functional_scratch(functional_account: FunctionalAccount) -> Iterator[Path]:
    """A directory of the functional account's, in its home, removed afterwards."""
    path = functional_account.home / f"scratch-{uuid.uuid4().hex[:8]}"
    path.mkdir()
    shutil.chown(path, FUNCTIONAL, FUNCTIONAL)
    yield path
    shutil.rmtree(path, ignore_errors=True)
