"""The small soak (bench/soak.py at `Sizes.small()`): part of `make test`; `make soak` is the full size."""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "soak: small versions of the `make soak` scenarios (bench/soak.py)")
