"""Finding the Chromium the console's browser tests drive (tests/support.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support import CHROMIUM_VARIABLE, ChromiumMissing, chromium_executable


def test_without_chromium_the_browser_tests_say_how_to_get_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a machine with no Chromium on the PATH and none configured
    monkeypatch.delenv(CHROMIUM_VARIABLE, raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    # When the browser tests look for it
    # Then they fail (never skip) with the way to install it
    with pytest.raises(ChromiumMissing, match=r"apt-get install -y chromium"):
        chromium_executable()


def test_a_configured_chromium_is_used_and_a_wrong_one_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given RELAY_CHROMIUM pointing at a binary
    binary = tmp_path / "chrome"
    binary.write_text("")
    monkeypatch.setenv(CHROMIUM_VARIABLE, str(binary))
    # Then that one is launched
    assert chromium_executable() == str(binary)
    # And a path that is not a file is refused by name
    monkeypatch.setenv(CHROMIUM_VARIABLE, str(tmp_path / "missing"))
    with pytest.raises(ChromiumMissing, match="missing is not a file"):
        chromium_executable()
