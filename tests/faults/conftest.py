"""Options of the fault-injection suite.

    pytest tests/faults --fault-messages=5000 --fault-seed=7

pytest reads these options only from the conftest files of the paths it is given, so name
tests/faults on the command line; the environment works from anywhere (`make test` included):

    RELAY_FAULT_MESSAGES=5000 RELAY_FAULT_SEED=7 make test
"""

from __future__ import annotations

import os

import pytest

DEFAULT_MESSAGES = 1000
DEFAULT_SEED = 20240605


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("relay-faults", "Relay fault-injection suite")
    group.addoption(
        "--fault-messages",
        type=int,
        default=None,
        help=f"messages the fault suite sends (env RELAY_FAULT_MESSAGES; default {DEFAULT_MESSAGES})",
    )
    group.addoption(
        "--fault-seed",
        type=int,
        default=None,
        help=f"seed of the fault injector (env RELAY_FAULT_SEED; default {DEFAULT_SEED})",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "faults: the fault-injection suite (sends many messages under faults)")


def _option(config: pytest.Config, name: str) -> int | None:
    try:
        value = config.getoption(name)
    except ValueError:  # the option was not registered (this conftest was loaded late)
        return None
    return int(value) if value is not None else None


@pytest.fixture
def fault_messages(request: pytest.FixtureRequest) -> int:
    return (
        _option(request.config, "--fault-messages")
        or int(os.environ.get("RELAY_FAULT_MESSAGES") or 0)
        or DEFAULT_MESSAGES
    )


@pytest.fixture
def fault_seed(request: pytest.FixtureRequest) -> int:
    option = _option(request.config, "--fault-seed")
    if option is not None:
        return option
    return int(os.environ.get("RELAY_FAULT_SEED") or DEFAULT_SEED)
