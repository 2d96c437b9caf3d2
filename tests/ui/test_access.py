"""Who may use the app: the shared secret, the allowed bases, and `serve`'s refusals."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from cli.main import main
from cli.serve import _join_hint
from worker.local_service import LocalService

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 60


def _password_file(folder: Path, secret: str = "open sesame", mode: int = 0o600) -> Path:
    path = folder / "app-password"
    path.write_text(secret + "\n")
    path.chmod(mode)
    return path


def test_with_a_password_file_no_page_runs_until_the_secret_is_given(
    empty_service, tmp_path, monkeypatch
):
    monkeypatch.setenv("STYLEDROP_APP_PASSWORD_FILE", str(_password_file(tmp_path)))
    at = AppTest.from_file(str(ROOT / "ui/app.py"), default_timeout=TIMEOUT).run()
    assert not at.exception
    assert [t.label for t in at.text_input] == ["Password"]
    assert not at.file_uploader  # the New style page did not run

    at.text_input(key="password").set_value("guess").run()
    at.button(key="sign_in").click().run()
    assert [e.value for e in at.error] == ["Wrong password."]
    assert not at.file_uploader

    at.text_input(key="password").set_value("open sesame").run()
    at.button(key="sign_in").click().run()
    assert not at.exception and not at.error
    assert at.session_state["authenticated"]
    assert "Password" not in [t.label for t in at.text_input]
    assert at.file_uploader  # the default page (New style) runs now


def test_jobs_may_use_only_the_configured_bases(empty_service, tmp_path, monkeypatch):
    bases = [str(tmp_path / "amused-256"), str(tmp_path / "amused-512")]
    monkeypatch.setenv("STYLEDROP_BASES", ":".join(bases))
    at = AppTest.from_file(str(ROOT / "ui/pages/new_style.py"), default_timeout=TIMEOUT).run()
    assert at.selectbox(key="base").options == ["(the embedded zoo)", *bases]
    assert not [t for t in at.text_input if "folder" in t.label.lower()]  # no typed paths


def test_serve_refuses_the_network_without_a_secret(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("STYLEDROP_APP_PASSWORD_FILE", raising=False)
    store = str(tmp_path / "store")
    assert main(["serve", "--address", "0.0.0.0", "--workers", "0", "--store", store]) == 2
    assert "--password-file" in capsys.readouterr().err
    loose = _password_file(tmp_path, mode=0o644)
    argv = ["serve", "--address", "0.0.0.0", "--password-file", str(loose), "--store", store]
    assert main(argv) == 2
    assert "chmod 600" in capsys.readouterr().err
    assert not (tmp_path / "store" / ".redis").exists()  # nothing was started


def test_the_broker_password_is_never_printed(tmp_path):
    service = LocalService(store=str(tmp_path / "store"), workers=0).start()
    try:
        hint = _join_hint(service)
        password = service.redis.password
        assert password not in hint and "$(cat " in hint
        url_file = service.redis.folder / "broker-url"
        assert url_file.read_text().strip() == service.broker
        assert stat.S_IMODE(url_file.stat().st_mode) == 0o600
    finally:
        service.stop()


@pytest.mark.parametrize("address", ["127.0.0.1", "::1", "localhost"])
def test_loopback_needs_no_secret(address, monkeypatch):
    from cli.serve import _is_loopback

    assert _is_loopback(address)
