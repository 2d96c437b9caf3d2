"""`styledrop doctor`: the report's fields, its JSON, and no password in either form."""

from __future__ import annotations

import json

import pytest

from cli.doctor import redact_url
from cli.main import main

PASSWORD = "pa55-w0rd-zq"


@pytest.fixture
def secret_services(monkeypatch, tmp_path):
    monkeypatch.setenv("STYLEDROP_BROKER_URL", f"redis://worker:{PASSWORD}@redis.internal:6379/0")
    monkeypatch.setenv("STYLEDROP_STORE", f"s3://bucket/store?secret={PASSWORD}")


def test_json_report_has_every_field_and_no_password(secret_services, capsys):
    assert main(["doctor", "--json"]) == 0
    out = capsys.readouterr().out
    assert PASSWORD not in out
    info = json.loads(out)
    assert info["python"].count(".") == 2
    assert info["packages"]["jax"] and info["packages"]["torch"] and info["packages"]["flax"]
    assert "jax-cuda13-plugin" in info["packages"]  # None where JAX has no CUDA build
    backend, torch_cuda = info["jax"]["backend"], info["torch"]["cuda_available"]
    assert backend in ("cpu", "gpu") and info["jax"]["devices"]
    assert info["compute_dtype"] == ("bfloat16" if backend == "gpu" else "float32")
    assert info["judge_device"] == ("cuda" if torch_cuda else "cpu")
    assert info["text_encoder_device"] == ("cuda" if torch_cuda and backend == "gpu" else "cpu")
    assert info["hf_hub"]["offline"] is True  # the test run sets HF_HUB_OFFLINE
    assert info["broker"] == "redis://worker:***@redis.internal:6379/0"
    assert info["store"] == "s3://bucket/store?secret=***"


def test_text_report_names_backend_devices_and_services_without_password(secret_services, capsys):
    assert main(["doctor"]) == 0
    out = capsys.readouterr().out
    assert PASSWORD not in out
    for label in ("jax backend", "jax devices", "text encoder", "clip judge", "compute dtype",
                  "store", "broker"):  # fmt: skip
        assert label in out
    assert "redis://worker:***@redis.internal:6379/0" in out


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:pw@localhost:6379/0", "redis://:***@localhost:6379/0"),
        ("rediss://user:pw@host/1", "rediss://user:***@host/1"),
        ("redis://localhost:6379/0?password=pw", "redis://localhost:6379/0?password=***"),
        ("redis://localhost:6379/0", "redis://localhost:6379/0"),
        ("runs/store", "runs/store"),
        ("s3://bucket/path", "s3://bucket/path"),
    ],
)
def test_redact_url_hides_passwords_only(url, shown):
    assert redact_url(url) == shown
