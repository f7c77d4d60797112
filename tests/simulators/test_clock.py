"""Clocks: virtual time moved by hand, system time driven by an asyncio loop; timers on both."""

from __future__ import annotations

import asyncio
import builtins
import logging
import threading

import pytest

from bifrost import errors
from simulators.clock import Clock, SystemClock, VirtualClock


class FakeMonotonic:
    """A monotonic_ns source the test moves, so SystemClock is tested without waiting."""

    def __init__(self) -> None:
        self.ns = 1_000_000_000_000

    def __call__(self) -> int:
        return self.ns

    def sleep(self, seconds: float) -> None:
        self.ns += round(seconds * 1e9)


def test_both_clocks_are_clocks() -> None:
    clocks: list[Clock] = [VirtualClock(), SystemClock()]
    assert all(clock.now() >= 0 for clock in clocks)


# --- VirtualClock -------------------------------------------------------------------------------------


def test_virtual_time_moves_only_when_told() -> None:
    clock = VirtualClock()
    assert clock.now() == 0.0
    assert clock.advance(1.5) == 1.5
    assert clock.now() == 1.5


def test_ten_steps_of_a_tenth_land_exactly_on_one_second() -> None:
    clock = VirtualClock()
    fired: list[float] = []
    clock.call_at(1.0, lambda: fired.append(clock.now()))
    for _ in range(10):
        clock.advance(0.1)
    assert clock.now() == 1.0
    assert fired == [1.0]


def test_due_timers_run_in_time_order_each_at_its_own_time() -> None:
    clock = VirtualClock()
    seen: list[tuple[str, float]] = []
    clock.call_at(3.0, lambda: seen.append(("c", clock.now())))
    clock.call_at(1.0, lambda: seen.append(("a", clock.now())))
    clock.call_at(2.0, lambda: seen.append(("b1", clock.now())))
    clock.call_at(2.0, lambda: seen.append(("b2", clock.now())))  # same time: scheduling order
    clock.advance(2.5)
    assert seen == [("a", 1.0), ("b1", 2.0), ("b2", 2.0)]
    assert clock.now() == 2.5
    clock.advance(10)
    assert seen[-1] == ("c", 3.0)


def test_periodic_timer_keeps_to_its_grid() -> None:
    clock = VirtualClock()
    times: list[float] = []
    clock.call_every(0.1, lambda: times.append(clock.now()))
    clock.advance(3600)
    assert len(times) == 36000
    assert times[:3] == [0.1, 0.2, 0.3]
    assert times[-1] == 3600.0


def test_call_every_with_a_start() -> None:
    clock = VirtualClock()
    times: list[float] = []
    clock.call_every(2, lambda: times.append(clock.now()), start=0.5)
    clock.advance(5)
    assert times == [0.5, 2.5, 4.5]


def test_a_timer_may_schedule_another_that_falls_due_in_the_same_advance() -> None:
    clock = VirtualClock()
    seen: list[float] = []
    clock.call_at(1, lambda: clock.call_at(clock.now() + 1, lambda: seen.append(clock.now())))
    clock.advance(5)
    assert seen == [2.0]


def test_cancel_stops_a_timer_even_a_periodic_one_from_its_own_callback() -> None:
    clock = VirtualClock()
    seen: list[float] = []
    once = clock.call_at(1, lambda: seen.append(-1))
    once.cancel()
    timer = clock.call_every(1, lambda: (seen.append(clock.now()), timer.cancel() if clock.now() >= 3 else None))
    clock.advance(10)
    assert seen == [1.0, 2.0, 3.0]
    assert clock.next_timer() is None
    assert "cancelled" in repr(timer)


def test_a_timer_in_the_past_runs_at_the_next_advance() -> None:
    clock = VirtualClock()
    clock.advance(5)
    seen: list[float] = []
    clock.call_at(1, lambda: seen.append(clock.now()))
    clock.advance(0)
    assert seen == [5.0]


def test_call_when_due_runs_at_once_if_its_time_has_come() -> None:
    clock = VirtualClock()
    clock.advance(5)
    seen: list[tuple[str, float, threading.Thread]] = []
    spent = clock.call_when_due(4, lambda: seen.append(("past", clock.now(), threading.current_thread())))
    assert seen == [("past", 5.0, threading.current_thread())]  # on this thread, before it returns
    assert spent.cancelled
    clock.call_when_due(6, lambda: seen.append(("future", clock.now(), threading.current_thread())))
    assert len(seen) == 1
    clock.advance(1)
    assert seen[1][:2] == ("future", 6.0)


def test_timers_set_from_other_threads_while_time_advances_each_run_once_in_order() -> None:
    clock = VirtualClock()
    ran: list[tuple[float, float]] = []  # (the timer's time, now() when it ran)
    start = threading.Barrier(3)

    def setter(offset: float) -> None:
        start.wait()
        for index in range(2000):
            when = clock.now() + (index % 7) * 0.001 + offset
            clock.call_when_due(when, lambda when=when: ran.append((when, clock.now())))

    threads = [threading.Thread(target=setter, args=(offset,)) for offset in (0.0, 0.0005)]
    for thread in threads:
        thread.start()
    start.wait()
    while any(thread.is_alive() for thread in threads):
        clock.advance(0.001)
    for thread in threads:
        thread.join()
    clock.advance(1)
    assert len(ran) == 4000
    assert all(now >= when - 1e-9 for when, now in ran)  # never early
    assert clock.next_timer() is None


def test_a_second_thread_advancing_waits_for_the_first() -> None:
    clock = VirtualClock()
    inside = threading.Event()
    release = threading.Event()
    order: list[str] = []

    def slow() -> None:
        order.append("slow starts")
        inside.set()
        assert release.wait(10)
        order.append("slow ends")

    clock.call_at(1, slow)
    clock.call_at(3, lambda: order.append(f"later at {clock.now()}"))
    first = threading.Thread(target=clock.advance, args=(2,))
    first.start()
    assert inside.wait(10)
    second = threading.Thread(target=clock.advance, args=(2,))  # not an error: it waits its turn
    second.start()
    release.set()
    first.join(10)
    second.join(10)
    assert order == ["slow starts", "slow ends", "later at 3.0"]
    assert clock.now() == 4.0


def test_advance_refuses_going_back_nan_and_being_called_from_a_timer() -> None:
    clock = VirtualClock()
    with pytest.raises(ValueError, match="forward"):
        clock.advance(-1)
    with pytest.raises(ValueError, match="finite"):
        clock.advance(float("nan"))
    clock.call_at(1, lambda: clock.advance(1))
    with pytest.raises(RuntimeError, match="inside a timer"):
        clock.advance(2)
    with pytest.raises(ValueError, match="positive"):
        clock.call_every(0, lambda: None)


def test_a_failing_timer_leaves_time_at_its_own_time_and_the_rest_pending() -> None:
    clock = VirtualClock()
    seen: list[float] = []

    def boom() -> None:
        raise ZeroDivisionError

    clock.call_at(1, boom)
    clock.call_at(2, lambda: seen.append(clock.now()))
    with pytest.raises(ZeroDivisionError):
        clock.advance(5)
    assert clock.now() == 1.0
    clock.advance(4)
    assert seen == [2.0]
    assert clock.now() == 5.0


def test_run_until_a_time() -> None:
    clock = VirtualClock()
    assert clock.run_until(12.5) == 12.5
    with pytest.raises(ValueError, match="past"):
        clock.run_until(1)


def test_run_until_a_predicate_jumps_from_timer_to_timer() -> None:
    clock = VirtualClock()
    state = {"count": 0}
    clock.call_every(0.25, lambda: state.update(count=state["count"] + 1))
    assert clock.run_until(lambda: state["count"] >= 7) == 1.75
    assert clock.run_until(lambda: True) == 1.75  # already true: time does not move


def test_run_until_with_a_step() -> None:
    clock = VirtualClock()
    assert clock.run_until(lambda: clock.now() >= 1.0, step=0.3) == pytest.approx(1.2)
    with pytest.raises(ValueError, match="positive"):
        clock.run_until(lambda: False, step=0)


def test_run_until_gives_up_at_the_limit() -> None:
    clock = VirtualClock()
    clock.call_every(1, lambda: None)
    with pytest.raises(errors.TimeoutError, match="within 30"):
        clock.run_until(lambda: False, limit=30)
    assert clock.now() == 30.0
    with pytest.raises(builtins.TimeoutError):  # also the builtin, as bifrost promises
        clock.run_until(lambda: False, limit=1)


def test_run_until_without_timers_goes_straight_to_the_limit() -> None:
    clock = VirtualClock()
    with pytest.raises(errors.TimeoutError):
        clock.run_until(lambda: False, limit=60)
    assert clock.now() == 60.0


def test_reset_goes_back_to_zero_and_cancels_every_timer() -> None:
    clock = VirtualClock()
    timer = clock.call_every(1, lambda: None)
    clock.advance(5)
    clock.reset()
    assert clock.now() == 0.0
    assert clock.next_timer() is None
    assert timer.cancelled
    assert repr(clock) == "VirtualClock(now=0.0)"


# --- SystemClock, by hand -------------------------------------------------------------------------------


def test_system_time_is_monotonic_time_times_speed() -> None:
    fake = FakeMonotonic()
    clock = SystemClock(speed=10, monotonic_ns=fake)
    assert clock.now() == 0.0
    fake.sleep(1.5)
    assert clock.now() == 15.0


def test_changing_speed_does_not_make_time_jump() -> None:
    fake = FakeMonotonic()
    clock = SystemClock(monotonic_ns=fake)
    fake.sleep(10)
    clock.speed = 100
    assert clock.now() == 10.0
    fake.sleep(1)
    assert clock.now() == 110.0
    assert clock.speed == 100
    with pytest.raises(ValueError, match="positive"):
        clock.speed = 0
    with pytest.raises(ValueError, match="positive"):
        SystemClock(speed=-1)


def test_run_due_runs_what_is_due_and_skips_missed_ticks() -> None:
    fake = FakeMonotonic()
    clock = SystemClock(monotonic_ns=fake)
    ticks: list[float] = []
    clock.call_every(1, lambda: ticks.append(clock.now()))
    once: list[float] = []
    clock.call_at(2.5, lambda: once.append(clock.now()))
    assert clock.run_due() == 0
    fake.sleep(1)
    assert clock.run_due() == 1
    fake.sleep(10)  # a loop that fell far behind runs one tick, not ten
    assert clock.run_due() == 2
    assert ticks == [1.0, 11.0]
    assert once == [11.0]
    assert clock.next_timer() == 12.0


def test_a_failing_timer_is_logged_and_the_others_still_run(caplog: pytest.LogCaptureFixture) -> None:
    fake = FakeMonotonic()
    clock = SystemClock(monotonic_ns=fake)
    seen: list[int] = []
    clock.call_at(1, lambda: 1 / 0)
    clock.call_at(1, lambda: seen.append(1))
    fake.sleep(1)
    with caplog.at_level(logging.ERROR, logger="simulators.clock"):
        assert clock.run_due() == 2
    assert seen == [1]
    assert "timer callback failed" in caplog.text


def test_system_reset_restarts_time_and_cancels_timers() -> None:
    fake = FakeMonotonic()
    clock = SystemClock(monotonic_ns=fake)
    clock.call_every(1, lambda: None)
    fake.sleep(5)
    clock.reset()
    assert clock.now() == 0.0
    assert clock.next_timer() is None
    assert "SystemClock(now=0.000" in repr(clock)


# --- SystemClock on an asyncio loop ---------------------------------------------------------------------


@pytest.mark.asyncio
async def test_an_attached_loop_runs_the_timers_when_due() -> None:
    clock = SystemClock(speed=1000)  # a plant second is a real millisecond
    clock.attach()
    fired = asyncio.Event()
    times: list[float] = []

    def tick() -> None:
        times.append(clock.now())
        if len(times) == 5:
            fired.set()

    timer = clock.call_every(1, tick)
    await asyncio.wait_for(fired.wait(), 10)
    timer.cancel()
    assert len(times) >= 5
    assert times == sorted(times)
    assert all(t >= 1.0 for t in times)
    clock.detach()


@pytest.mark.asyncio
async def test_an_earlier_timer_rearms_the_loop() -> None:
    clock = SystemClock(speed=1000)
    clock.attach()
    clock.call_at(3_600_000, lambda: None)  # an hour of real time away
    fired = asyncio.Event()
    clock.call_at(clock.now() + 1, fired.set)
    await asyncio.wait_for(fired.wait(), 10)
    clock.detach()


def test_timers_scheduled_from_another_thread_run_on_the_loop_thread() -> None:
    loop = asyncio.new_event_loop()
    runner = threading.Thread(target=loop.run_forever, daemon=True)
    runner.start()
    try:
        clock = SystemClock(speed=1000)
        clock.attach(loop)
        fired = threading.Event()
        ran_on: list[threading.Thread] = []
        clock.call_at(clock.now() + 2, lambda: (ran_on.append(threading.current_thread()), fired.set()))
        assert fired.wait(10)
        assert ran_on == [runner]
        fired.clear()
        clock.reset()  # from this thread, while the loop runs
        clock.call_at(1, fired.set)
        assert fired.wait(10)
        clock.detach()
    finally:
        loop.call_soon_threadsafe(loop.stop)
        runner.join(10)
        loop.close()
    clock.call_at(1, lambda: None)  # a closed loop is not touched
