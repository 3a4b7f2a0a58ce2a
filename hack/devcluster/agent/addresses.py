"""Loopback addresses for pods: each pod gets its own 127.0.0.N (N from 2), so several servers on
the node can listen on the same containerPort. Linux routes all of 127.0.0.0/8 to `lo`, so no
interface setup is needed. Addresses are reused after the pod is gone, lowest first."""

from __future__ import annotations

import threading


class AddressesExhausted(Exception):
    pass


class AddressPool:
    def __init__(self, first: int = 2, last: int = 254, prefix: str = "127.0.0") -> None:
        self._candidates = [f"{prefix}.{n}" for n in range(first, last + 1)]
        self._owners: dict[str, str] = {}  # address -> pod uid
        self._lock = threading.Lock()

    def allocate(self, uid: str, preferred: str | None = None) -> str:
        """The pod's address: the one it already holds, else `preferred` if free, else the lowest free."""
        with self._lock:
            for address, owner in self._owners.items():
                if owner == uid:
                    return address
            if preferred in self._candidates and preferred not in self._owners:
                self._owners[preferred] = uid
                return preferred
            for address in self._candidates:
                if address not in self._owners:
                    self._owners[address] = uid
                    return address
        raise AddressesExhausted(f"all {len(self._candidates)} pod addresses are in use")

    def release(self, uid: str) -> None:
        with self._lock:
            for address in [a for a, owner in self._owners.items() if owner == uid]:
                del self._owners[address]

    def in_use(self) -> dict[str, str]:
        with self._lock:
            return dict(self._owners)
