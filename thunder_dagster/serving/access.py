"""Who a request is: the API key in its `Authorization: Bearer` header, checked against the
active keys, which the server re-reads from the query-log store every few seconds (a revoked
key stops working within `refresh_seconds`). Without the store, the keys last read stay in
force; before any were read, nothing authenticates."""

import threading
import time
from typing import TYPE_CHECKING

from fastapi import HTTPException, Request

if TYPE_CHECKING:
    # The store's modules (SQLAlchemy) load with the first keyed request, not at start-up.
    from thunder_dagster.access.keys import Identity


class StoreSnapshot:
    """What `read(engine)` last returned from the query-log store, read again once it is
    `refresh_seconds` old. While the store is down the last value stays; before any read it is
    None."""

    def __init__(self, store_of, read, refresh_seconds: float = 5.0):
        self.store_of = store_of  # () -> an open QueryStore, or None while it is unavailable
        self.read = read
        self.refresh_seconds = refresh_seconds
        self._value = None
        self._read_at = -float("inf")
        self._lock = threading.Lock()

    def value(self):
        """The value last read. Once it is due, one thread reads it again in the background
        and every caller goes on with the last value meanwhile, so a slow or hung store holds
        no request; a failed read is tried again after `refresh_seconds`, not on every
        request. The first read, before there is any value, is waited for, and so is every
        read with `refresh_seconds` 0 (read on every request, by that request)."""
        if time.monotonic() - self._read_at < self.refresh_seconds:
            return self._value
        waited = (self._value is None and self._read_at < 0) or self.refresh_seconds <= 0
        if not self._lock.acquire(blocking=waited):
            return self._value  # a read is under way
        if waited:
            try:
                self._refresh()
            finally:
                self._lock.release()
        else:
            threading.Thread(target=self._refresh_and_release, daemon=True).start()
        return self._value

    def _refresh_and_release(self) -> None:
        try:
            self._refresh()
        finally:
            self._lock.release()

    def _refresh(self) -> None:
        if time.monotonic() - self._read_at < self.refresh_seconds:
            return
        self._read_at = time.monotonic()
        store = self.store_of()
        if store is None:
            self._read_at = -float("inf")  # not open yet: tried again on the next request
            return
        try:
            self._value = self.read(store.engine)
        except Exception:  # the store went down: the value last read stays
            pass


def _active_keys(engine) -> dict:
    from thunder_dagster.access.keys import KeyStore

    return KeyStore(engine).active()


class KeyCache:
    def __init__(self, store_of, refresh_seconds: float = 5.0):
        self.snapshot = StoreSnapshot(store_of, _active_keys, refresh_seconds)

    def keys(self) -> dict | None:
        return self.snapshot.value()

    def authenticate(self, request: Request) -> "Identity":
        """The identity of the request's key; 401 without a valid one, 503 when no keys could
        be read. Whether it may do what it asks is the caller's check (Identity.may)."""
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise HTTPException(
                401,
                "an API key is required: send `Authorization: Bearer <key>` (an operator "
                "makes one with `thunder keys create`)",
                headers={"WWW-Authenticate": "Bearer"},
            )
        from thunder_dagster.access.keys import authenticate

        keys = self.keys()
        if keys is None:
            raise HTTPException(
                503, "API keys cannot be checked: the query-log store is unavailable; try again"
            )
        identity = authenticate(token, keys)
        if identity is None:
            raise HTTPException(
                401,
                "the API key is not valid (unknown, revoked or mistyped)",
                headers={"WWW-Authenticate": "Bearer"},
            )
        return identity
