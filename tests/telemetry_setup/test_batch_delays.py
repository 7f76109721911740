"""OTLP span batches go out a second apart unless a delay was asked for; the file keeps 200 ms."""

from __future__ import annotations

import pytest

from telemetry import setup


@pytest.fixture(autouse=True)
def _clean_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in setup._LOCAL_DEFAULTS:  # restored after the test
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setattr(setup, "_defaulted", set())


def test_otlp_batches_are_a_second_apart_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FLLM_OTLP_SCHEDULE_DELAY_MS", raising=False)
    setup.apply_local_defaults()
    assert setup.otlp_schedule_delay_ms() == setup.OTLP_SCHEDULE_DELAY_MS
    monkeypatch.setenv("FLLM_OTLP_SCHEDULE_DELAY_MS", "300")
    assert setup.otlp_schedule_delay_ms() == 300


def test_an_explicit_batch_delay_applies_to_otlp_too(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "50")
    monkeypatch.delenv("FLLM_OTLP_SCHEDULE_DELAY_MS", raising=False)
    setup.apply_local_defaults()
    assert setup.otlp_schedule_delay_ms() is None  # the SDK reads OTEL_BSP_SCHEDULE_DELAY
