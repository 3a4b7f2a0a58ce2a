"""Who a bearer token is: the one PersonalAI whose status.access.tokenSha256 is the token's sha256.

The operator keeps the hash there (never the token; the gateway reads no Secret). The index follows
a list and watch of PersonalAIs, so a rotated token (a new hash) works, and the old one stops
working, without a restart. Every known hash is compared in constant time on each lookup.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
from dataclasses import dataclass

import httpx

from .kube import Kube, KubeError

log = logging.getLogger(__name__)
RELIST_DELAY_SECONDS = 2.0


@dataclass(frozen=True)
class Person:
    """A PersonalAI the token belongs to; `name` is its userId."""

    namespace: str
    name: str


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def token_sha256(personalai: dict) -> str | None:
    """The hash the operator published for this PersonalAI, if any."""
    access = (personalai.get("status") or {}).get("access") or {}
    value = access.get("tokenSha256")
    return value.lower() if isinstance(value, str) and len(value) == 64 else None


class TokenIndex:
    def __init__(self) -> None:
        self._hashes: dict[Person, str] = {}
        self.synced: set[str] = set()  # the namespaces ("": all) whose first list is in

    def __len__(self) -> int:
        return len(self._hashes)

    def put(self, personalai: dict) -> None:
        meta = personalai.get("metadata") or {}
        person = Person(meta.get("namespace", ""), meta.get("name", ""))
        digest = token_sha256(personalai)
        if digest and not meta.get("deletionTimestamp"):
            self._hashes[person] = digest
        else:
            self._hashes.pop(person, None)

    def remove(self, personalai: dict) -> None:
        meta = personalai.get("metadata") or {}
        self._hashes.pop(Person(meta.get("namespace", ""), meta.get("name", "")), None)

    def replace(self, namespace: str, personalais: list[dict]) -> None:
        """What a fresh list of `namespace` ("": every namespace) says, in place of what was known there."""
        for person in [p for p in self._hashes if not namespace or p.namespace == namespace]:
            del self._hashes[person]
        for personalai in personalais:
            self.put(personalai)

    def authenticate(self, token: str | None) -> Person | None:
        """The token's person, or None. Every hash is compared (constant time each), match or not."""
        if not token:
            return None
        digest = hash_token(token)
        found = None
        for person, known in list(self._hashes.items()):
            if hmac.compare_digest(known, digest):
                found = person
        return found


async def follow(kube: Kube, index: TokenIndex, namespace: str) -> None:
    """Keep `index` in step with the PersonalAIs of `namespace` ("" for all), for ever: list, then watch
    from the list's version; list again when the watch is too old (410) or the connection fails."""
    while True:
        try:
            listed = await kube.list(namespace, "personalais")
            index.replace(namespace, listed.get("items", []))
            index.synced.add(namespace)
            version = listed["metadata"]["resourceVersion"]
            while True:  # a watch the API server ends on time is re-opened from the last version seen
                async for event in kube.watch(namespace, "personalais", version):
                    obj = event.get("object") or {}
                    version = (obj.get("metadata") or {}).get("resourceVersion", version)
                    if event["type"] in ("ADDED", "MODIFIED"):
                        index.put(obj)
                    elif event["type"] == "DELETED":
                        index.remove(obj)
        except asyncio.CancelledError:
            raise
        except (KubeError, httpx.HTTPError, ValueError, KeyError) as error:
            log.warning("PersonalAI watch in %s ended (%s: %s); listing again", namespace or "all namespaces",
                        type(error).__name__, error if isinstance(error, KubeError) else "")
        await asyncio.sleep(RELIST_DELAY_SECONDS)
