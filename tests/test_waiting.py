"""The tests' one way to wait for another thread or process."""

import itertools

import pytest

from waiting import eventually


def test_eventually_returns_the_first_true_answer() -> None:
    answers = iter([None, 0, "", ("lines", 0), "later"])
    assert eventually(lambda: next(answers), within=5, every=0, failure=str) == ("lines", 0)
    assert next(answers) == "later"  # not asked again once it had its answer


def test_eventually_fails_with_the_message_as_it_stands_at_the_deadline() -> None:
    calls = itertools.count()
    with pytest.raises(AssertionError, match=r"^asked [2-9]\d* times$"):
        eventually(
            lambda: next(calls) < 0,
            within=0.05,
            every=0.02,
            failure=lambda: f"asked {next(calls)} times",
        )


def test_an_assertion_inside_the_check_fails_at_once() -> None:
    def died() -> bool:
        raise AssertionError("the process exited")

    with pytest.raises(AssertionError, match="the process exited"):
        eventually(died, within=60, failure=lambda: "never reached")
