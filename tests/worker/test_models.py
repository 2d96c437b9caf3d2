"""The compute dtype and device a worker's jobs run with (no model is loaded here)."""

from __future__ import annotations

import pytest

from worker.models import DTYPE_ENV, compute_dtype, device_label

SETTINGS = [
    (None, "float32"),
    ("auto", "float32"),
    ("bfloat16", "bfloat16"),
    ("float32", "float32"),
]


@pytest.mark.parametrize(("setting", "dtype"), SETTINGS)
def test_auto_is_float32_on_a_cpu_and_a_setting_overrides(setting, dtype, monkeypatch):
    if setting is None:
        monkeypatch.delenv(DTYPE_ENV, raising=False)
    else:
        monkeypatch.setenv(DTYPE_ENV, setting)
    assert compute_dtype() == dtype
    assert device_label() == f"cpu:cpu ({dtype})"


def test_an_unknown_dtype_is_refused_with_the_choices(monkeypatch):
    monkeypatch.setenv(DTYPE_ENV, "fp8")
    with pytest.raises(ValueError, match="auto, float32, bfloat16"):
        compute_dtype()
