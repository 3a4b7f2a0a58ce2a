"""Bearer tokens from a mounted Secret, kept only as sha256 digests and compared in constant time.

The Secret is mounted as a directory (`auth.tokensDir`). Every regular file in it holds tokens, one
per line (so a Secret with a single key `tokens` holding several lines works, and so does one key
per token); blank lines and lines starting with `#` are skipped. Kubernetes' `..data` symlink
folders and dot files are ignored. A token's digest is also its owner id for sessions.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from pathlib import Path

from personalai_contracts.paths import resolve

MIN_TOKEN_CHARS = 16


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Principal:
    """Who made a request: the owner id is the token's digest, never the token."""

    owner: str

    @property
    def short_id(self) -> str:
        # Enough to tell callers apart in logs and metrics without identifying the token.
        return self.owner[:8]


class TokenStore:
    def __init__(self, digests: set[str]):
        self._digests = tuple(sorted(digests))

    @classmethod
    def from_dir(cls, tokens_dir: str | Path) -> TokenStore:
        return cls(read_token_digests(resolve(tokens_dir)))

    def __len__(self) -> int:
        return len(self._digests)

    def authenticate(self, token: str | None) -> Principal | None:
        """The principal for `token`, or None; every stored digest is compared, in constant time."""
        if not token:
            return None
        digest = hash_token(token)
        found = None
        for known in self._digests:
            if hmac.compare_digest(known, digest):
                found = known
        return Principal(found) if found else None


def read_token_digests(directory: Path) -> set[str]:
    if not directory.is_dir():
        raise FileNotFoundError(f"auth.tokensDir {directory} is not a directory")
    digests = set()
    for path in sorted(directory.iterdir()):
        if path.name.startswith(".") or not path.is_file():
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            token = line.strip()
            if not token or token.startswith("#"):
                continue
            if len(token) < MIN_TOKEN_CHARS:
                raise ValueError(f"token on line {number} of {path.name} is shorter than {MIN_TOKEN_CHARS} characters")
            digests.add(hash_token(token))
    return digests


def bearer_token(authorization: str | None) -> str | None:
    """The token in an `Authorization: Bearer <token>` header value, or None."""
    if not authorization:
        return None
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()
