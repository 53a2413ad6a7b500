"""The limits of one statement: one immutable answer from ``Timeouts.limits``."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from infra.storage import Timeouts

_limit = st.none() | st.floats(0.001, 1e6)


@given(
    statement=_limit,
    client=_limit,
    per_call=_limit,
    deadlines=st.booleans(),
)
def test_limits_of_one_call(
    statement: float | None, client: float | None, per_call: float | None, deadlines: bool
) -> None:
    """An explicit timeout always gets asyncpg's own timer; the default is the dead-peer deadline's
    when one applies; the reported limit is the one that fires first."""
    timeouts = Timeouts(statement, client, 5.0)
    limits = timeouts.limits(per_call, deadlines=deadlines)
    in_effect = client if per_call is None else per_call
    assert limits.watched is (per_call is None and deadlines)
    assert limits.client == (None if limits.watched else in_effect)
    limits_known = [x for x in (in_effect, statement) if x is not None]
    assert limits.reported == (min(limits_known) if limits_known else None)
    assert limits == timeouts.limits(per_call, deadlines=deadlines)  # a plain value
