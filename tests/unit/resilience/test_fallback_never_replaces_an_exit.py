"""A fallback never replaces a cancellation or an interpreter exit, in either call style.

Even with ``on=(BaseException,)``, ``CancelledError``, ``KeyboardInterrupt``,
``SystemExit`` and ``GeneratorExit`` raised by the primary propagate unchanged from
``call`` and from ``call_result``; naming ``CancelledError`` in ``on`` is refused with a
message saying why.
"""

from __future__ import annotations

import asyncio

import pytest

from infra.resilience import Fallback

EXITS = [asyncio.CancelledError, KeyboardInterrupt, SystemExit, GeneratorExit]


async def answer(_error: BaseException) -> str:
    return "fallback"


@pytest.mark.parametrize("exit_type", EXITS, ids=lambda t: t.__name__)
@pytest.mark.parametrize("style", ["call", "call_result"])
async def test_an_exit_of_the_primary_propagates(
    exit_type: type[BaseException], style: str
) -> None:
    fallback: Fallback[str] = Fallback(answer, on=(BaseException,))
    raised = exit_type()

    async def primary() -> str:
        raise raised

    with pytest.raises(exit_type) as caught:
        await getattr(fallback, style)(primary)
    assert caught.value is raised
    assert not fallback.handles(raised)


@pytest.mark.parametrize("style", ["call", "call_result"])
async def test_an_ordinary_error_is_still_replaced(style: str) -> None:
    fallback: Fallback[str] = Fallback(answer, on=(BaseException,))

    async def primary() -> str:
        raise LookupError("down")

    result = await getattr(fallback, style)(primary)
    value = result if style == "call" else result.value
    assert value == "fallback"
    if style == "call_result":
        assert result.used_fallback
        assert isinstance(result.error, LookupError)


def test_naming_cancelled_error_is_refused_with_the_reason() -> None:
    with pytest.raises(
        TypeError, match=r"^on must not name CancelledError: a cancelled call is never replaced$"
    ):
        Fallback(answer, on=(ValueError, asyncio.CancelledError))


async def test_a_failing_fallback_keeps_its_own_context_and_notes_the_original() -> None:
    """The fallback's error chains to what it was handling; the primary's is noted."""

    replica: dict[str, str] = {}

    async def flaky_fallback(_error: BaseException) -> str:
        try:
            return replica["k"]
        except KeyError:
            raise RuntimeError("replica down") from None

    fallback: Fallback[str] = Fallback(flaky_fallback, on=(LookupError,))

    async def primary() -> str:
        raise LookupError("primary down")

    with pytest.raises(RuntimeError, match="replica down") as caught:
        await fallback.call(primary)
    assert isinstance(caught.value.__context__, KeyError)  # not overwritten
    assert caught.value.__notes__ == [
        "raised by the fallback while handling LookupError: primary down"
    ]


def test_repr_lists_every_handled_error() -> None:
    fallback = Fallback(answer, on=(KeyError, TimeoutError), pass_args=True)
    assert repr(fallback) == (f"Fallback({answer!r}, on=(KeyError, TimeoutError,), pass_args=True)")
