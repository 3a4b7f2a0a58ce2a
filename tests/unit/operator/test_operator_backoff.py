"""Retries of a failed reconcile: growing, capped, jittered, and never sooner than Retry-After."""

import email.utils

import kopf
import pytest
from kubernetes.client.rest import ApiException

from personalai_operator.backoff import BackoffPolicy, retry_after_seconds
from personalai_operator.handlers.common import InvalidSpec
from personalai_operator.handlers.retrying import backs_off

pytestmark = pytest.mark.unit
POLICY = BackoffPolicy(base_seconds=1.0, cap_seconds=30.0)


def refused(status, retry_after=None):
    error = ApiException(status=status, reason="Too Many Requests" if status == 429 else "Internal Server Error")
    error.headers = {"Retry-After": retry_after} if retry_after is not None else {}
    return error


def test_delays_double_up_to_the_cap():
    most = [POLICY.delay(retry, jitter=lambda: 1.0) for retry in range(8)]
    assert most == [1, 2, 4, 8, 16, 30, 30, 30]
    assert POLICY.delay(1000, jitter=lambda: 1.0) == 30  # no overflow on a very long outage


def test_jitter_keeps_between_half_and_all_and_still_grows():
    least = [POLICY.delay(retry, jitter=lambda: 0.0) for retry in range(6)]
    assert least == [0.5, 1, 2, 4, 8, 15]
    # The least of one attempt is the most of the one before: jittered delays never shrink below the cap.
    assert all(least[i + 1] == POLICY.delay(i, jitter=lambda: 1.0) for i in range(4))


def test_retry_after_is_honoured_in_seconds_and_as_a_date_but_capped():
    assert POLICY.delay(0, refused(429, "7"), jitter=lambda: 1.0) == 7
    assert POLICY.delay(5, refused(429, "2"), jitter=lambda: 1.0) == 30  # the backoff is already longer
    assert POLICY.delay(0, refused(429, "3600"), jitter=lambda: 1.0) == 30
    date = email.utils.formatdate(1_000_012.0, usegmt=True)
    assert retry_after_seconds(refused(503, date), now=1_000_000.0) == 12
    assert retry_after_seconds(refused(500)) is None
    assert retry_after_seconds(refused(429, "soon")) is None
    assert retry_after_seconds(ValueError("not from the API")) is None


def test_a_failed_handler_becomes_a_temporary_error_with_the_policys_delay():
    @backs_off(BackoffPolicy(base_seconds=1.0, cap_seconds=8.0))
    def handler(retry, **_):
        raise refused(429, "5") if retry == 0 else refused(500)

    with pytest.raises(kopf.TemporaryError) as first:
        handler(retry=0)
    assert first.value.delay == 5 and "HTTP 429" in str(first.value)
    with pytest.raises(kopf.TemporaryError) as later:
        handler(retry=6)
    assert 4 <= later.value.delay <= 8 and "HTTP 500" in str(later.value)


def test_kopf_errors_and_success_pass_through():
    @backs_off()
    def invalid(**_):
        raise InvalidSpec("spec.training.epochs: must be at least 1")

    @backs_off()
    def fine(retry, **_):
        return retry

    with pytest.raises(InvalidSpec):
        invalid(retry=3)
    assert fine(retry=2) == 2
    assert fine() == 0
