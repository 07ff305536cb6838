from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from hpcgate.config import load_settings


def test_defaults_need_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HPCGATE_HOME", str(tmp_path))
    monkeypatch.delenv("HPCGATE_CONFIG", raising=False)
    settings = load_settings()
    assert settings.database_url == f"sqlite+aiosqlite:///{tmp_path}/hpcgate.db"
    assert list(settings.systems) == ["local"]
    assert settings.systems["local"].spool == tmp_path / "systems" / "local" / "spool"
    assert (settings.host, settings.port) == ("127.0.0.1", 8000)


def test_file_then_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "c.toml"
    config.write_text("port = 9000\n[systems.alpha]\nslots = 3\n[systems.beta]\n")
    monkeypatch.setenv("HPCGATE_HOME", str(tmp_path))
    monkeypatch.setenv("HPCGATE_PORT", "9100")
    settings = load_settings(config)
    assert settings.port == 9100
    assert list(settings.systems) == ["alpha", "beta"]
    assert settings.systems["alpha"].slots == 3


def test_secrets_are_masked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HPCGATE_HOME", str(tmp_path))
    monkeypatch.setenv("HPCGATE_DATABASE_URL", "postgresql+asyncpg://gw:s3cret@db/hpcgate")
    shown = load_settings().masked()
    assert "s3cret" not in str(shown) and "gw:***@db" in shown["database_url"]


@pytest.mark.parametrize(
    "text",
    [
        "[systems.local]\nslot = 3\n",
        "[systems.local]\nscheduler = 'lsf'\n",
        "[systems.BAD]\n",
        "colour = 'red'\n",
        "[systems.local]\nslots = 0\n",
    ],
)
def test_invalid_files_are_refused(
    tmp_path: Path, text: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HPCGATE_HOME", str(tmp_path))
    config = tmp_path / "c.toml"
    config.write_text(text)
    with pytest.raises(ValidationError):
        load_settings(config)


def test_missing_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        load_settings(tmp_path / "absent.toml")


def test_a_root_gateway_refuses_a_fresh_default_home_beside_an_earlier_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hpcgate import config

    default, legacy = tmp_path / "var-lib-hpcgate", tmp_path / "root" / ".local" / "share"
    (legacy / "hpcgate").mkdir(parents=True)
    (legacy / "hpcgate" / "hpcgate.db").write_bytes(b"")
    monkeypatch.setattr(config, "ROOT_HOME", default)
    monkeypatch.setattr("hpcgate.config.os.geteuid", lambda: 0)
    monkeypatch.setenv("HOME", str(tmp_path / "root"))
    monkeypatch.delenv("HPCGATE_HOME", raising=False)
    monkeypatch.delenv("HPCGATE_CONFIG", raising=False)
    with pytest.raises(ValidationError, match=r"HPCGATE_HOME=.*root/\.local/share/hpcgate"):
        load_settings()
    default.mkdir()
    (default / "hpcgate.db").write_bytes(b"")  # moved, or started fresh on purpose
    assert load_settings().home == default
    monkeypatch.setenv("HPCGATE_HOME", str(legacy / "hpcgate"))
    assert load_settings().home == legacy / "hpcgate"
