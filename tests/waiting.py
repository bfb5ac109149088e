"""Waiting for what another thread or process does: one loop, one deadline, one message."""

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def eventually(
    check: Callable[[], T], *, within: float, every: float = 0.05, failure: Callable[[], str]
) -> T:
    """Call `check` until it returns something true, and return that. When `within` seconds
    pass first, fail with `failure()` (called then, so it can show a log as it stands). An
    assertion inside `check` (a process that died) fails at once."""
    deadline = time.monotonic() + within
    while not (result := check()):
        if time.monotonic() >= deadline:
            raise AssertionError(failure())
        time.sleep(every)
    return result
