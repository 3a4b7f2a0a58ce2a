"""Bearer tokens from a mounted Secret, kept only as sha256 digests and compared in constant time.

The Secret is mounted as a directory (`auth.tokensDir`). Every regular file in it holds tokens, one
per line (so a Secret with a single key `tokens` holding several lines works, and so does one key
per token); blank lines and lines starting with `#` are skipped. Kubernetes' `..data` symlink
folders and dot files are ignored. A token's digest is also its owner id for sessions.

Rotation needs no restart: the kubelet updates a mounted Secret in place (a new `..data` folder,
swapped in atomically), so before each authentication the store compares the folder's and files'
stat (mtime, size, inode; no reading) with what it last read, and re-reads on a change: the new token
is accepted and the old one refused from then on. A folder that cannot be read meanwhile (a token
too short, the folder gone) keeps the digests in force, and says so in the log.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from dataclasses import dataclass
from pathlib import Path

from personalai_contracts.paths import resolve

log = logging.getLogger(__name__)
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


Signature = tuple[object, ...]


class TokenStore:
    def __init__(self, digests: set[str], directory: Path | None = None, field: str = "auth.tokensDir"):
        """`directory`: re-read it when it changes (from_dir); None: these digests for good. `field`:
        the config field that names the folder, for the log and errors."""
        self._digests = tuple(sorted(digests))
        self._directory = directory
        self._field = field
        self._signature = directory_signature(directory) if directory else None

    @classmethod
    def from_dir(cls, tokens_dir: str | Path, field: str = "auth.tokensDir") -> TokenStore:
        directory = resolve(tokens_dir)
        return cls(read_token_digests(directory, field), directory, field)

    def __len__(self) -> int:
        return len(self._digests)

    def refresh(self) -> bool:
        """Re-read the tokens folder if it changed since it was last read; returns whether it was."""
        if self._directory is None:
            return False
        signature = directory_signature(self._directory)
        if signature == self._signature:
            return False
        self._signature = signature  # a bad folder is reported once, not at every request
        try:
            digests = read_token_digests(self._directory, self._field)
        except (OSError, ValueError) as error:  # a bad token, the folder gone: the tokens in force stay
            log.warning("%s not re-read, its earlier tokens stay in force: %s", self._field, error)
            return False
        self._digests = tuple(sorted(digests))
        log.info("%s re-read: %d tokens", self._field, len(digests))
        return True

    def authenticate(self, token: str | None) -> Principal | None:
        """The principal for `token`, or None; every stored digest is compared, in constant time."""
        self.refresh()
        if not token:
            return None
        digest = hash_token(token)
        found = None
        for known in self._digests:
            if hmac.compare_digest(known, digest):
                found = known
        return Principal(found) if found else None


def directory_signature(directory: Path) -> Signature:
    """What changes when a token file is written or the kubelet swaps the Secret's files; stat only."""
    try:
        entries = [(path.name, (info := path.stat()).st_mtime_ns, info.st_size, info.st_ino)
                   for path in sorted(directory.iterdir()) if not path.name.startswith(".") and path.is_file()]
        return (directory.stat().st_mtime_ns, *entries)
    except OSError:
        return ("unreadable",)


def read_token_digests(directory: Path, field: str = "auth.tokensDir") -> set[str]:
    if not directory.is_dir():
        raise FileNotFoundError(f"{field} {directory} is not a directory")
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
