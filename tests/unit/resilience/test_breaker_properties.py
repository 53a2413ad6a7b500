"""Property tests: the breaker state machine under random interleavings of concurrent calls.

A hypothesis ``RuleBasedStateMachine`` starts calls (each blocks on its own future until a
rule finishes it with success, a counted failure, an excluded error or cancellation) and
moves a ManualClock. After every step the breaker's invariants are checked:

* never more than ``half_open_max_calls`` probes in flight;
* OPEN until ``timeout`` elapsed on the clock, and a probe is admitted once it has;
* a probe's success closes; a probe's failure reopens with a fresh timeout;
* excluded errors and cancellations change neither the count nor the state;
* ``failure_threshold`` consecutive counted failures in CLOSED open the breaker;
* reading the breaker (state, snapshot, repr) is pure: no observer event, no change, and
  the state is always the last transition observers were told about.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from infra.exceptions import BackendConnectionError, CircuitBreakerOpenError, QuerySyntaxError
from infra.resilience.breaker import CircuitBreaker, CircuitBreakerConfig
from infra.resilience.clock import ManualClock
from infra.resilience.hooks import BreakerState, RecordingObserver

OUTCOMES = ("success", "failure", "excluded", "cancel")


class ClockedRecorder(RecordingObserver):
    """Records events and the clock time of the last transition to OPEN."""

    def __init__(self, clock: ManualClock) -> None:
        super().__init__()
        self.clock = clock
        self.opened_at: float | None = None

    def on_state_change(self, name: str, old: BreakerState, new: BreakerState) -> None:
        super().on_state_change(name, old, new)
        if new is BreakerState.OPEN:
            self.opened_at = self.clock.now()


@dataclass
class Pending:
    task: asyncio.Task[str]
    future: asyncio.Future[str]
    probe: bool  # admitted while HALF_OPEN
    epoch: int  # number of transitions when it was admitted


class BreakerMachine(RuleBasedStateMachine):
    """Drives one breaker through random concurrent calls on a private event loop."""

    def __init__(self) -> None:
        super().__init__()
        self.clock = ManualClock()
        self.rec = ClockedRecorder(self.clock)
        self.pending: list[Pending] = []
        self.breaker: CircuitBreaker
        self.config: CircuitBreakerConfig
        self.loop = asyncio.new_event_loop()  # last: teardown closes it

    @initialize(
        threshold=st.integers(1, 4),
        timeout=st.sampled_from([1.0, 5.0, 30.0]),
        probes=st.integers(1, 3),
    )
    def build(self, threshold: int, timeout: float, probes: int) -> None:
        self.config = CircuitBreakerConfig(
            failure_threshold=threshold, timeout=timeout, half_open_max_calls=probes
        )
        self.breaker = CircuitBreaker(self.config, name="m", clock=self.clock, hooks=[self.rec])

    # ----------------------------------------------------------------- helpers
    def run(self) -> None:
        """Let every runnable task advance until all wait on their futures."""
        for _ in range(2):
            self.loop.run_until_complete(asyncio.sleep(0))

    def epoch(self) -> int:
        return len(self.rec.transitions)

    def raw_state(self) -> BreakerState:
        """The last transition's target, read without the time-based refresh."""
        return self.rec.transitions[-1][2] if self.rec.transitions else BreakerState.CLOSED

    def live_probes(self) -> list[Pending]:
        return [p for p in self.pending if p.probe and p.epoch == self.epoch()]

    # ------------------------------------------------------------------- rules
    @rule()
    def start_call(self) -> None:
        """A new caller arrives; it is either admitted (blocks) or rejected at once."""
        state_before = self.raw_state()
        now = self.clock.now()
        busy = len(self.live_probes())
        future: asyncio.Future[str] = self.loop.create_future()
        task = self.loop.create_task(self.breaker.call(lambda: future))
        self.run()
        due = self.rec.opened_at is not None and now >= self.rec.opened_at + self.config.timeout
        if state_before is BreakerState.OPEN and not due:
            assert task.done()
            assert isinstance(task.exception(), CircuitBreakerOpenError)
            return
        if state_before is BreakerState.OPEN or (
            state_before is BreakerState.HALF_OPEN and busy < self.config.half_open_max_calls
        ):
            assert not task.done(), "a due or free half-open breaker must admit a probe"
            self.pending.append(Pending(task, future, probe=True, epoch=self.epoch()))
            return
        if state_before is BreakerState.HALF_OPEN:
            assert task.done()
            assert isinstance(task.exception(), CircuitBreakerOpenError)
            return
        assert not task.done()
        self.pending.append(Pending(task, future, probe=False, epoch=self.epoch()))

    @precondition(lambda self: bool(self.pending))
    @rule(index=st.integers(0, 1000), outcome=st.sampled_from(OUTCOMES))
    def finish_call(self, index: int, outcome: str) -> None:
        """A pending call ends; check the transition it must (or must not) cause."""
        call = self.pending.pop(index % len(self.pending))
        current = call.epoch == self.epoch()
        state, count = self.raw_state(), self.breaker.failure_count
        if outcome == "success":
            call.future.set_result("ok")
        elif outcome == "failure":
            call.future.set_exception(BackendConnectionError())
        elif outcome == "excluded":
            call.future.set_exception(QuerySyntaxError())
        else:
            call.task.cancel()
        self.run()
        assert call.task.done()
        if outcome in ("excluded", "cancel") or not current:
            assert self.raw_state() is state
            assert self.breaker.failure_count == count
        elif outcome == "success":
            assert self.raw_state() is BreakerState.CLOSED
            assert self.breaker.failure_count == 0
        elif call.probe:
            assert self.raw_state() is BreakerState.OPEN
            assert self.rec.opened_at == self.clock.now()
        else:
            assert self.breaker.failure_count == count + 1
            opens = count + 1 >= self.config.failure_threshold
            assert (self.raw_state() is BreakerState.OPEN) == opens

    @rule(seconds=st.sampled_from([0.5, 1.0, 4.9, 5.0, 29.0, 31.0]))
    def advance(self, seconds: float) -> None:
        """Time passes on the injected clock."""
        self.clock.advance(seconds)

    @rule(times=st.integers(1, 10))
    def read(self, times: int) -> None:
        """A health endpoint, a metrics scrape and a log line read the breaker: that
        sends no observer event and changes nothing a later read or call sees."""
        events = (list(self.rec.transitions), list(self.rec.calls))
        before = (self.breaker.state, self.breaker.failure_count, self.breaker.snapshot())
        for _ in range(times):
            self.breaker.snapshot()
            repr(self.breaker)
        after = (self.breaker.state, self.breaker.failure_count, self.breaker.snapshot())
        assert (list(self.rec.transitions), list(self.rec.calls)) == events
        assert after == before

    # -------------------------------------------------------------- invariants
    @invariant()
    def probes_never_exceed_the_limit(self) -> None:
        """At most half_open_max_calls probes of the current half-open period are running."""
        if self.raw_state() is BreakerState.HALF_OPEN:
            assert len(self.live_probes()) <= self.config.half_open_max_calls
            assert self.breaker.snapshot().half_open_in_flight == len(self.live_probes())

    @invariant()
    def open_reports_the_time_left(self) -> None:
        """While OPEN, retry_after_s is the rest of the timeout (0 once due)."""
        if self.raw_state() is BreakerState.OPEN and self.rec.opened_at is not None:
            left = self.rec.opened_at + self.config.timeout - self.clock.now()
            assert self.breaker.snapshot().retry_after_s == max(0.0, left)

    @invariant()
    def the_state_is_what_observers_were_told(self) -> None:
        """Reading the state is pure: it is always the last transition's target (an
        elapsed OPEN breaker stays OPEN until a call is admitted as its probe)."""
        assert self.breaker.state is self.raw_state()

    def teardown(self) -> None:
        for call in self.pending:
            call.task.cancel()
        self.run()
        self.loop.close()


BreakerMachine.TestCase.settings = settings(
    max_examples=100,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestBreakerStateMachine = BreakerMachine.TestCase
