"""The agent dials ``wss://`` and verifies the gateway's certificate: a real gateway served
over TLS by uvicorn (a certificate for ``localhost`` from a CA this test makes), and real
agent processes, one given that CA (it connects and serves a job), one trusting only the
system's CAs, one trusting another CA, and one dialling an address the certificate does not
name (each refuses and logs why)."""

from __future__ import annotations

import datetime
import os
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.agent.test_agent_gateway import agent_token, eventually
from tests.support.accounts import give
from tests.support.agent_process import AgentProcess
from tests.support.gateway_process import GatewayProcess, end, new_gateway
from tests.support.jobs import ended, submit, wait_for_job

Key = ec.EllipticCurvePrivateKey


@dataclass
class Authority:
    """A certificate authority made for one test (its certificate in ``pem``)."""

    key: Key
    cert: x509.Certificate
    pem: Path

    def issue(self, names: list[x509.GeneralName], directory: Path) -> tuple[Path, Path]:
        """A server certificate for ``names`` and its key, written to ``directory``."""
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "hpcgate test gateway")])
        cert = (
            _valid(x509.CertificateBuilder(), subject, self.cert.subject, key)
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(self.key, hashes.SHA256())
        )
        return _write(directory / "server.pem", cert), _write_key(directory / "server.key", key)


def authority(directory: Path, name: str) -> Authority:
    directory.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    usage = x509.KeyUsage(
        digital_signature=True, key_cert_sign=True, crl_sign=True,
        content_commitment=False, key_encipherment=False, data_encipherment=False,
        key_agreement=False, encipher_only=False, decipher_only=False,
    )  # fmt: skip
    cert = (
        _valid(x509.CertificateBuilder(), subject, subject, key)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(usage, critical=True)
        .sign(key, hashes.SHA256())
    )
    return Authority(key, cert, _write(directory / "ca.pem", cert))


def _valid(
    builder: x509.CertificateBuilder, subject: x509.Name, issuer: x509.Name, key: Key
) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return (
        builder.subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
    )


def _write(path: Path, cert: x509.Certificate) -> Path:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


def _write_key(path: Path, key: Key) -> Path:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    return path


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("agent-tls")
    base.chmod(0o711)
    (base / "alice").mkdir()
    give(base / "alice", "alice")
    return base


@pytest.fixture(scope="module")
def ca(base: Path) -> Authority:
    return authority(base / "ca", "hpcgate test CA")


@pytest.fixture(scope="module")
def gateway(base: Path, ca: Authority) -> Iterator[GatewayProcess]:
    """The gateway over TLS, its certificate naming ``localhost`` only (not 127.0.0.1)."""
    cert, key = ca.issue([x509.DNSName("localhost")], base / "ca")
    config = f"""
[systems.edge]
scheduler = "embedded"
transport = "agent"
status_interval = 0.2
roots = ["{base}/{{user}}"]
workdir = "{base}/{{user}}"
spool = "{base}/spool"
"""
    made = new_gateway(base / "gateway-home", config)
    env = {**os.environ, "HPCGATE_HOME": str(made.home)}
    argv = [sys.executable, "-m", "tests.agent.tls_serve", str(cert), str(key), "serve"]
    argv += ["--config", str(made.config), "--port", str(made.port)]
    with (made.home / "server.log").open("ab") as log:
        made.process = subprocess.Popen(argv, env=env, stdout=log, stderr=log)
    try:
        _wait_healthy(made, ca.pem)
        yield made
    finally:
        end(made.process)


def _wait_healthy(gateway: GatewayProcess, ca_pem: Path, timeout: float = 120) -> None:
    trust = ssl.create_default_context(cafile=str(ca_pem))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert gateway.process is not None and gateway.process.poll() is None, gateway.log_tail()
        try:
            health = httpx.get(f"{https(gateway)}/api/v1/health", verify=trust, timeout=5)
            if health.status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.1)
    raise TimeoutError(f"the TLS gateway did not start:\n{gateway.log_tail()}")


def https(gateway: GatewayProcess, host: str = "localhost") -> str:
    return f"https://{host}:{gateway.port}"


def tls_agent(
    gateway: GatewayProcess,
    base: Path,
    name: str,
    host: str,
    ca_pem: Path | None,
    token: str | None = None,
) -> AgentProcess:
    token = token or agent_token(gateway)[1]
    extra = f'ca_file = "{ca_pem}"\n' if ca_pem else ""
    roots = (f"{base}/{{user}}",)
    made = AgentProcess(base / name, https(gateway, host), token, roots, base / "spool")
    made.extra = extra
    return made


def test_an_agent_given_the_ca_connects_over_tls_and_serves_a_job(
    gateway: GatewayProcess, base: Path, ca: Authority
) -> None:
    agent = tls_agent(gateway, base, "trusting", "localhost", ca.pem)
    agent.start()
    try:
        trust = ssl.create_default_context(cafile=str(ca.pem))
        token = gateway.token("alice")
        headers = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=https(gateway), headers=headers, verify=trust) as alice:
            eventually(lambda: bool(alice.get("/api/v1/systems/edge").json().get("agents")))
            job = submit(alice, "edge", script="#!/bin/sh\necho over tls\n", name="tls")
            done = wait_for_job(alice, job["id"], ended, system="edge")
            assert done["state"] == "COMPLETED", done
            output = alice.get(f"/api/v1/systems/edge/jobs/{job['id']}/output")
            assert "over tls" in output.text
            data = os.urandom(2 << 20)  # a download's bytes on the agent's data connection
            (base / "alice" / "tls.bin").write_bytes(data)
            give(base / "alice" / "tls.bin", "alice")
            got = alice.get("/api/v1/systems/edge/files/download", params={"path": "tls.bin"})
            assert got.status_code == 200 and got.content == data
        assert "connected to wss://localhost" in agent.log()
        eventually(lambda: '"POST /api/v1/agent/streams/' in gateway.log())  # once answered
    finally:
        agent.stop()


def test_agents_refuse_a_certificate_they_cannot_verify_and_log_why(
    gateway: GatewayProcess, base: Path, ca: Authority
) -> None:
    """All three at once (each start is a second or two of imports)."""
    _, token = agent_token(gateway)  # a good token: only the certificate stands in the way
    other = authority(base / "other-ca", "another CA").pem
    cases = {  # name: (the host dialled, the CA given, why it is refused)
        "system-cas-only": ("localhost", None, "unable to get local issuer certificate"),
        "another-ca": ("localhost", other, "unable to get local issuer certificate"),
        "wrong-host-name": ("127.0.0.1", ca.pem, "IP address mismatch"),
    }
    agents = {
        name: tls_agent(gateway, base, name, host, trusted, token)
        for name, (host, trusted, _) in cases.items()
    }
    for agent in agents.values():
        agent.start()
    try:
        for name, agent in agents.items():
            eventually(lambda agent=agent: "reconnecting" in agent.log())  # type: ignore[misc]
            log = agent.log()
            assert "the gateway's certificate was refused" in log, log
            assert cases[name][2] in log and "connected to" not in log, log
    finally:
        for agent in agents.values():
            agent.stop()
