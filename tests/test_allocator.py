"""The allocator setting the `veil` command applies: on glibc it is applied, and it can be
turned off."""

from __future__ import annotations

import platform

import pytest

from veil.core.allocator import keep_freed_memory


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="the setting is glibc's mallopt")
def test_freed_memory_is_kept_on_glibc():
    assert keep_freed_memory() is True


def test_the_setting_can_be_turned_off(monkeypatch):
    monkeypatch.setenv("VEIL_MALLOC", "system")
    assert keep_freed_memory() is False
