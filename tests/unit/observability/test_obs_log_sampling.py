"""Log sampling: per-key bursts per window, "suppressed N similar" summaries, nothing lost."""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from infra.observability import LogSampler, configure_log_sampling, flush_log_sampling, log_sampler


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Lines(logging.Handler):
    """Keeps every record written to its logger."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def lines() -> Iterator[tuple[logging.Logger, Lines]]:
    logger = logging.getLogger("tests.log_sampling")
    handler = Lines()
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    yield logger, handler
    logger.removeHandler(handler)
    logger.propagate = True


def _summaries(handler: Lines) -> list[logging.LogRecord]:
    return [r for r in handler.records if hasattr(r, "suppressed")]


KEYS = [("redis", "get", "CacheConnectionError"), ("redis", "get", "CircuitBreakerOpenError")]


@given(
    burst=st.integers(1, 6),
    window=st.sampled_from([0.5, 1.0, 10.0]),
    events=st.lists(
        st.tuples(st.integers(0, len(KEYS) - 1), st.floats(0.0, 0.7, allow_nan=False)),
        max_size=300,
    ),
)
def test_nothing_is_lost_and_each_key_writes_at_most_a_burst_per_window(
    burst: int, window: float, events: list[tuple[int, float]]
) -> None:
    """Written lines plus summarized counts equal the events, per key; within one window
    a key writes at most ``burst`` lines and one summary; a key's first lines are always
    written, however loud another key is."""
    logger = logging.getLogger("tests.log_sampling.property")
    handler = Lines()
    logger.addHandler(handler)
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    try:
        clock = FakeClock()
        sampler = LogSampler(burst, window, clock=clock)
        seen: Counter[tuple[str, str, str]] = Counter()
        written: dict[tuple[str, str, str], list[float]] = defaultdict(list)
        for index, step in events:
            clock.now += step
            key = KEYS[index]
            seen[key] += 1
            if sampler.admit(logger, logging.WARNING, key):
                written[key].append(clock.now)
            elif seen[key] <= burst:
                pytest.fail(f"line {seen[key]} of {key} suppressed; burst is {burst}")
        pending = sampler.suppressed()
        flushed = sampler.flush()
        assert flushed == pending
        assert sampler.suppressed() == 0
        summarized: Counter[tuple[str, str, str]] = Counter()
        for record in _summaries(handler):
            key = (record.component, record.operation, record.error_type)  # type: ignore[attr-defined]
            summarized[key] += record.suppressed  # type: ignore[attr-defined]
            assert record.suppressed > 0  # type: ignore[attr-defined]
            assert record.levelno == logging.WARNING
        for key, total in seen.items():
            assert len(written[key]) + summarized[key] == total, key
            # A window opens at a written line (the first line after the previous window
            # is always written) and lasts `window` seconds: at most `burst` lines in it.
            per_window: Counter[float] = Counter()
            start = -1.0
            for t in written[key]:
                if start < 0 or t - start >= window:
                    start = t
                per_window[start] += 1
            assert max(per_window.values(), default=0) <= burst
        # A summary is only ever written for lines that were suppressed.
        assert sum(summarized.values()) == sum(seen.values()) - sum(map(len, written.values()))
    finally:
        logger.removeHandler(handler)
        logger.propagate = True


def test_a_burst_then_one_summary_before_the_next_window_line(
    lines: tuple[logging.Logger, Lines],
) -> None:
    """5 written, 95 counted; the first line after the window is preceded by their summary."""
    logger, handler = lines
    clock = FakeClock()
    sampler = LogSampler(5, 10.0, clock=clock)
    key = ("postgres", "fetch", "DatabaseConnectionError")
    admitted = [sampler.admit(logger, logging.WARNING, key) for _ in range(100)]
    assert admitted == [True] * 5 + [False] * 95
    assert handler.records == []  # the sampler itself writes only summaries
    assert sampler.suppressed("postgres") == 95
    assert sampler.suppressed("redis") == 0
    clock.now = 10.0
    assert sampler.admit(logger, logging.WARNING, key)
    (summary,) = handler.records
    assert summary.levelno == logging.WARNING
    assert summary.getMessage() == (
        "postgres fetch: suppressed 95 similar line(s) (DatabaseConnectionError) in the last 10.0 s"
    )
    assert (summary.component, summary.operation, summary.error_type) == key  # type: ignore[attr-defined]
    assert summary.suppressed == 95  # type: ignore[attr-defined]
    assert summary.period_s == 10.0  # type: ignore[attr-defined]
    assert sampler.suppressed() == 0


def test_each_key_has_its_own_budget(lines: tuple[logging.Logger, Lines]) -> None:
    """A flood of one error type never hides the first lines of another."""
    logger, _ = lines
    sampler = LogSampler(2, 60.0, clock=FakeClock())
    loud = ("redis", "get", "CircuitBreakerOpenError")
    for _ in range(1000):
        sampler.admit(logger, logging.WARNING, loud)
    quiet = ("redis", "get", "CacheConnectionError")
    assert sampler.admit(logger, logging.WARNING, quiet)
    assert sampler.admit(logger, logging.WARNING, ("redis", "set", "CircuitBreakerOpenError"))


def test_flush_by_component_leaves_other_components_pending(
    lines: tuple[logging.Logger, Lines],
) -> None:
    logger, handler = lines
    sampler = LogSampler(1, 60.0, clock=FakeClock())
    for component in ("postgres", "redis"):
        for _ in range(4):
            sampler.admit(logger, logging.INFO, (component, "get", "X"))
    assert sampler.flush("redis") == 3
    assert [r.component for r in handler.records] == ["redis"]  # type: ignore[attr-defined]
    assert handler.records[0].levelno == logging.INFO
    assert sampler.suppressed() == 3
    assert sampler.flush() == 3
    assert sampler.flush() == 0


def test_keys_past_the_limit_share_one_overflow_key(lines: tuple[logging.Logger, Lines]) -> None:
    """Memory stays bounded even if a caller passes unbounded keys."""
    logger, handler = lines
    sampler = LogSampler(1, 60.0, clock=FakeClock(), max_keys=3)
    results = [sampler.admit(logger, logging.WARNING, ("c", f"op{i}", "E")) for i in range(10)]
    assert results == [True, True, True, True] + [False] * 6  # 3 keys, then one overflow
    assert sampler.flush() == 6
    (summary,) = handler.records
    assert (summary.component, summary.operation) == ("other", "other")  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"burst": 0}, "burst"),
        ({"burst": True}, "burst"),
        ({"burst": 2.5}, "burst"),
        ({"window": 0}, "window"),
        ({"window": float("inf")}, "window"),
        ({"window": "10"}, "window"),
        ({"max_keys": 0}, "max_keys"),
    ],
)
def test_bad_arguments_are_refused_by_name(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        LogSampler(**kwargs)  # type: ignore[arg-type]


def test_configure_replaces_the_process_sampler_and_flushes_the_old_one(
    lines: tuple[logging.Logger, Lines],
) -> None:
    logger, handler = lines
    old = configure_log_sampling(1, 60.0)
    try:
        assert log_sampler() is old
        for _ in range(3):
            old.admit(logger, logging.WARNING, ("redis", "get", "E"))
        fresh = configure_log_sampling(4, 2.0)
        assert log_sampler() is fresh
        assert (fresh.burst, fresh.window) == (4, 2.0)
        assert [r.suppressed for r in handler.records] == [2]  # type: ignore[attr-defined]
        assert flush_log_sampling() == 0
    finally:
        configure_log_sampling()
