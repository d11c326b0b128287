"""Waiting with a deadline: the one place the tests poll.

* ``wait_until`` for ``async def`` code: the event loop keeps serving the sessions between
  polls, and an awaited attempt is cut off at the deadline.
* ``wait_for`` for sync code (fixtures, subprocess-driven tests such as
  test_crossbar_edge.py): it blocks between polls, so it refuses to run on an event loop.

Both call ``pred()`` until it returns something truthy and return that value (``pred`` may
return an awaitable in ``wait_until``). At the deadline they raise ``WaitTimeout``, an
``AssertionError`` naming ``what`` (a string, or a callable giving one, evaluated only then so
that it can show the state at the deadline).

An exception from ``pred`` ends the wait at once, unless the caller expects it while the
condition does not hold yet: an instance of ``retry_on`` (a tuple of exception types, empty by
default) for which ``retry_if`` (when given) is true. Such an exception counts as "not yet",
and the last one is reported at the deadline. Name the narrowest types, e.g. ``JoinAborted``
with ``retry_if=lambda e: e.details.reason == "wamp.error.no_such_realm"``.

Absence is not waited for here. A test that something did NOT happen sends a marker along the
same ordered path after the action, waits for the marker, and then checks what arrived before
it (test_pubsub.py: ``end_marker``).
"""

from __future__ import annotations

import asyncio
import inspect
import time
from typing import Any, Callable

# Default deadline (seconds) of one wait.
DEFAULT_TIMEOUT = 5.0
# The shortest time an awaited attempt gets, even when the deadline is (almost) reached.
MIN_ATTEMPT = 1.0


class WaitTimeout(AssertionError):
    """The awaited condition did not hold by the deadline."""


class _Deadline:
    def __init__(self, timeout: float, what, retry_on: tuple, retry_if: Callable[[BaseException], bool] | None):
        self.timeout = timeout
        self.at = time.monotonic() + timeout
        self.what = what
        self.retry_on = tuple(retry_on)
        self.retry_if = retry_if
        self.last_error: BaseException | None = None

    def left(self) -> float:
        return self.at - time.monotonic()

    def expected(self, exc: BaseException) -> bool:
        """Whether ``exc`` means "not yet" (then it is remembered for the report)."""
        if self.retry_on and isinstance(exc, self.retry_on) and (self.retry_if is None or self.retry_if(exc)):
            self.last_error = exc
            return True
        return False

    def timed_out(self, note: str = "") -> WaitTimeout:
        what = self.what() if callable(self.what) else self.what
        msg = f"timed out after {self.timeout}s waiting for {what}"
        if note:
            msg += f" ({note})"
        if self.last_error is not None:
            msg += f"; last expected error: {self.last_error!r}"
        return WaitTimeout(msg)


async def wait_until(
    pred: Callable[[], Any],
    timeout: float = DEFAULT_TIMEOUT,
    interval: float = 0.02,
    what="condition",
    *,
    retry_on: tuple = (),
    retry_if: Callable[[BaseException], bool] | None = None,
):
    """Poll ``pred()`` (sync, or returning an awaitable) until truthy; returns that value.

    An awaited attempt gets the time left until the deadline (at least ``MIN_ATTEMPT``), so a
    request that never answers ends the wait too."""
    d = _Deadline(timeout, what, retry_on, retry_if)
    while True:
        try:
            value = pred()
            if inspect.isawaitable(value):
                value = await asyncio.wait_for(value, max(d.left(), MIN_ATTEMPT))
        except asyncio.TimeoutError:
            raise d.timed_out("the last attempt did not finish") from None
        except Exception as e:  # noqa: BLE001 - only what the caller expects is swallowed
            if not d.expected(e):
                raise
            value = None
        if value:
            return value
        left = d.left()
        if left <= 0:
            raise d.timed_out() from d.last_error
        await asyncio.sleep(min(interval, left))


def wait_for(
    pred: Callable[[], Any],
    timeout: float = DEFAULT_TIMEOUT,
    interval: float = 0.1,
    what="condition",
    *,
    retry_on: tuple = (),
    retry_if: Callable[[BaseException], bool] | None = None,
):
    """Poll the sync ``pred()`` until truthy; returns that value. Blocks: not for async code."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        raise RuntimeError("waiting.wait_for blocks the event loop: use `await wait_until(...)` in async code")
    d = _Deadline(timeout, what, retry_on, retry_if)
    while True:
        try:
            value = pred()
        except Exception as e:  # noqa: BLE001 - only what the caller expects is swallowed
            if not d.expected(e):
                raise
            value = None
        if value:
            return value
        left = d.left()
        if left <= 0:
            raise d.timed_out() from d.last_error
        time.sleep(min(interval, left))
