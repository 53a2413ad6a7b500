"""Timeout edges: a published deadline, argument names, and use outside a task.

``published_deadline`` makes a deadline visible to the code inside (its ``seconds`` is
the time left when published; a tighter enclosing deadline wins); ``Deadline`` names its
argument when refusing it; a ``Timeout`` used where no task runs (a loop callback) is a
clear ``RuntimeError`` instead of an obscure failure later.
"""

from __future__ import annotations

import asyncio

import pytest

from infra.resilience import ManualClock
from infra.resilience.timeout import Deadline, Timeout, current_deadline, published_deadline


def test_a_published_deadline_reports_the_time_left_when_published() -> None:
    clock = ManualClock(start=100.0)
    assert current_deadline() is None
    with published_deadline(130.0, clock) as deadline:
        assert current_deadline() is deadline
        assert deadline.seconds == 30.0
        clock.advance(10.0)
        assert deadline.remaining() == 20.0
        assert deadline.elapsed() == 10.0
        with published_deadline(200.0, clock) as looser:
            assert looser.seconds == 90.0
            assert current_deadline() is deadline  # the enclosing one is tighter
    assert current_deadline() is None


def test_a_deadline_names_its_argument() -> None:
    with pytest.raises(ValueError, match=r"^seconds must be a finite number of seconds > 0"):
        Deadline(0)
    with pytest.raises(TypeError, match=r"^seconds must be a number of seconds, got str$"):
        Deadline("1")  # type: ignore[arg-type]


@pytest.mark.parametrize("style", ["begin", "exit"])
async def test_a_timeout_outside_any_task_is_a_clear_error(style: str) -> None:
    loop = asyncio.get_running_loop()
    caught: asyncio.Future[BaseException | None] = loop.create_future()
    timeout = Timeout(1.0)

    def from_a_callback() -> None:  # loop callbacks run outside any task
        try:
            if style == "begin":
                timeout.begin()
            else:
                timeout.__aexit__(None, None, None).send(None)
        except BaseException as exc:
            caught.set_result(exc)
        else:
            caught.set_result(None)

    loop.call_soon(from_a_callback)
    error = await caught
    assert isinstance(error, RuntimeError)
    assert str(error) == "Timeout must be used inside an asyncio task"
