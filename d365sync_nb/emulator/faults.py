"""The fault gate every service request passes before it is served: the bearer-token check
(401), the in-flight slot (429 + Retry-After beyond ``max_concurrency``), draining a POST body,
the configured latency and seeded random faults (503 or a dropped connection), plus the logging
filter that keeps uvicorn quiet about the connections dropped on purpose."""

from __future__ import annotations

import asyncio
import hmac
import random
import threading
from typing import TYPE_CHECKING, Any

from .odata import ODataError

if TYPE_CHECKING:
    from starlette.types import Receive

    from .options import EmulatorOptions

__all__ = ["DROP_FILTER", "FaultGate"]


def _format_seconds(value: float) -> str:
    """Retry-After value: integers without decimals, fractions as given."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


class FaultGate:
    """Admission, delays and faults of service requests, with the in-flight counters and the
    fault RNG they need.

    Per request the app calls, in this order: :meth:`admit` (401, then 429; on return the request
    holds a slot, given back once with :meth:`release`), :meth:`delay` (body drain and latency) and
    :meth:`fault` (503 or a drop). ``lock`` guards ``in_flight``/``max_in_flight``; the app passes
    its stats lock so that a stats snapshot reads them together with its other counters.
    """

    __slots__ = ("_lock", "_rng", "in_flight", "max_in_flight")

    def __init__(self, fault_seed: int, lock: threading.Lock | None = None) -> None:
        self._lock = lock if lock is not None else threading.Lock()
        self._rng = random.Random(fault_seed)
        self.in_flight = 0
        self.max_in_flight = 0

    def reseed(self, fault_seed: int) -> None:
        """Restart the fault sequence from ``fault_seed``."""
        self._rng = random.Random(fault_seed)

    def admit(self, options: EmulatorOptions, auth: bytes | None) -> None:
        """Raise 401 without the configured bearer token, then take an in-flight slot or raise
        429 + Retry-After when ``max_concurrency`` slots are taken."""
        if options.token is not None and not (
            auth is not None and hmac.compare_digest(auth, b"Bearer " + options.token.encode())
        ):
            raise ODataError(
                401,
                "Unauthorized",
                "Authentication failed: a valid bearer token is required.",
                [(b"www-authenticate", b'Bearer error="invalid_token"')],
            )
        limit = options.max_concurrency
        with self._lock:
            if limit is None or self.in_flight < limit:
                self.in_flight += 1
                self.max_in_flight = max(self.max_in_flight, self.in_flight)
                return
        raise ODataError(
            429,
            "TooManyRequests",
            "The request was throttled by service protection limits; retry later.",
            [(b"retry-after", _format_seconds(options.retry_after).encode())],
        )

    def release(self) -> None:
        """Give back a slot taken by :meth:`admit`."""
        with self._lock:
            self.in_flight -= 1

    def reset_peak(self) -> None:
        """Restart ``max_in_flight`` from the current count; the caller holds the lock."""
        self.max_in_flight = self.in_flight

    @staticmethod
    def delays(options: EmulatorOptions, method: str) -> bool:
        """Whether :meth:`delay` has anything to do (lets the hot path skip the coroutine)."""
        return method == "POST" or bool(options.latency_ms)

    @staticmethod
    async def delay(options: EmulatorOptions, method: str, receive: Receive) -> None:
        """Read and discard a POST body, then sleep ``latency_ms``."""
        if method == "POST":
            while True:
                message = await receive()
                if message["type"] != "http.request" or not message.get("more_body"):
                    break
        if options.latency_ms:
            await asyncio.sleep(options.latency_ms / 1000)

    def fault(self, options: EmulatorOptions) -> bool:
        """Roll for a random fault at ``fault_rate``: half raise 503, half return True, meaning
        the app drops the connection; False serves the request."""
        if not (options.fault_rate and self._rng.random() < options.fault_rate):
            return False
        if self._rng.random() < 0.5:
            raise ODataError(
                503, "ServiceUnavailable", "The service is temporarily unavailable. Please retry."
            )
        return True


class _DropFilter:
    """Silences uvicorn's error log for connections the emulator drops on purpose."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending = 0

    def expect(self) -> None:
        """Announce one intentional drop."""
        with self._lock:
            self._pending += 1

    def filter(self, record: Any) -> bool:
        """logging filter protocol: False drops the record."""
        if "without completing response" not in str(record.msg):
            return True
        with self._lock:
            if self._pending > 0:
                self._pending -= 1
                return False
        return True


DROP_FILTER = _DropFilter()
