"""Token store (hashed, constant-time), bearer parsing, rate limiter and stream slots."""

from __future__ import annotations

import pytest

from personalai_server.auth import TokenStore, bearer_token, hash_token
from personalai_server.limits import RateLimiter, StreamSlots, retry_after_header

pytestmark = pytest.mark.unit


def test_tokens_from_a_secret_dir_are_kept_hashed(tmp_path):
    (tmp_path / "tokens").write_text("# people who may chat\nalpha-token-0123456789\n\nbeta-token-0123456789\n")
    (tmp_path / "extra").write_text("gamma-token-0123456789\n")
    (tmp_path / "..data").mkdir()  # Kubernetes' own folder in a Secret mount is skipped
    store = TokenStore.from_dir(tmp_path)
    assert len(store) == 3
    assert "alpha-token-0123456789" not in repr(store._digests)
    principal = store.authenticate("beta-token-0123456789")
    assert principal.owner == hash_token("beta-token-0123456789")
    assert store.authenticate("beta-token-012345678") is None
    assert store.authenticate("") is None and store.authenticate(None) is None


def test_short_tokens_are_refused_by_line_not_content(tmp_path):
    (tmp_path / "tokens").write_text("long-enough-token-123\nshort\n")
    with pytest.raises(ValueError) as raised:
        TokenStore.from_dir(tmp_path)
    assert "line 2" in str(raised.value) and "short" not in str(raised.value).replace("shorter", "")


def test_bearer_header_parsing():
    assert bearer_token("Bearer abc") == "abc"
    assert bearer_token("bearer  abc ") == "abc"
    assert bearer_token("Basic abc") is None
    assert bearer_token("Bearer ") is None and bearer_token(None) is None


def test_rate_limiter_sliding_window_per_key():
    now = [1000.0]
    limiter = RateLimiter(clock=lambda: now[0])
    assert [limiter.acquire("a", 3) for _ in range(3)] == [0.0, 0.0, 0.0]
    wait = limiter.acquire("a", 3)
    assert wait == pytest.approx(60.0)
    assert limiter.acquire("b", 3) == 0.0
    now[0] += 30
    assert limiter.acquire("a", 3) == pytest.approx(30.0)
    now[0] += 30.001
    assert limiter.acquire("a", 3) == 0.0
    assert retry_after_header(0.2) == "1" and retry_after_header(29.1) == "30"


def test_stream_slots_per_key():
    slots = StreamSlots()
    assert slots.try_acquire("a", 2) and slots.try_acquire("a", 2)
    assert not slots.try_acquire("a", 2)
    assert slots.try_acquire("b", 2)
    slots.release("a")
    assert slots.active("a") == 1 and slots.active() == 2
    assert slots.try_acquire("a", 2)
