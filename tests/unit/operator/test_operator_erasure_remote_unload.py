"""Erasure's remote-adapter step, its pure pieces: when the chat server is asked, the request, its
answer read as an outcome, and how the condition and the audit record say it."""

from __future__ import annotations

import base64

import pytest

from personalai_operator import erasure

pytestmark = pytest.mark.unit
NOW = "2026-12-01T12:00:00Z"
LUKE = {"metadata": {"name": "luke", "namespace": "people", "uid": "u-1"}}


def test_only_a_running_vllm_server_is_asked():
    assert erasure.unload_without_asking("vllm", server_running=True) is None
    gone = erasure.unload_without_asking("vllm", server_running=False)
    assert gone.unloaded is None and not gone.retry and "no chat server" in gone.reason
    tgi = erasure.unload_without_asking("tgi", server_running=True)
    assert tgi.unloaded is None and not tgi.retry and "tgi has no API to unload" in tgi.reason


def test_the_request_is_a_post_to_admin_forget_under_the_token():
    request = erasure.forget_request("10.0.0.7:8080", "tok")
    assert (request.method, request.full_url) == ("POST", "http://10.0.0.7:8080/admin/forget")
    assert request.get_header("Authorization") == "Bearer tok"


@pytest.mark.parametrize(("status", "body", "unloaded", "retry"), [
    (200, b'{"engine":"vllm","unloaded":2}', 2, False),
    (200, b'{"engine":"vllm","unloaded":0}', 0, False),
    (401, b"", None, True), (502, b'{"error":{}}', None, True),
    (200, b"not json", None, True), (200, b'{"unloaded":-1}', None, True), (200, b'{"unloaded":true}', None, True),
])
def test_the_answer_is_a_count_or_a_reason_to_ask_again(status, body, unloaded, retry):
    outcome = erasure.forget_answer(status, body)
    assert (outcome.unloaded, outcome.retry) == (unloaded, retry)
    assert outcome.reason if unloaded is None else not outcome.reason


def test_the_token_is_read_from_the_secret_data():
    secret = {"data": {"token": base64.b64encode(b"tok\n").decode()}}
    assert erasure.secret_token(secret, "token") == "tok"
    assert erasure.secret_token(None, "token") is None and erasure.secret_token({"data": {}}, "token") is None


def test_the_condition_and_record_carry_the_count_or_not_confirmed():
    removed = {"Deployment": ["luke-chat"]}
    confirmed = erasure.RemoteUnload(2)
    message = erasure.purged_condition(removed, confirmed)["message"]
    assert "2 adapters unloaded from the remote engine" in message and "1 Deployment" in message
    assert erasure.erasure_record(LUKE, removed, 1.0, NOW, confirmed)["remoteAdapters"] == {"unloaded": 2}

    unreachable = erasure.RemoteUnload(None, "the chat server has no ready endpoint", retry=True)
    assert "the chat server has no ready endpoint" in erasure.unload_pending_condition(unreachable)["message"]
    assert erasure.unload_pending_condition(unreachable)["reason"] == "Erasing"
    message = erasure.purged_condition(removed, unreachable)["message"]
    assert "remote unload not confirmed (the chat server has no ready endpoint)" in message
    assert erasure.erasure_record(LUKE, removed, 1.0, NOW, unreachable)["remoteAdapters"] == {
        "confirmed": False, "reason": "the chat server has no ready endpoint"}

    local = erasure.erasure_record(LUKE, removed, 1.0, NOW)  # the local engine: nothing remote to say
    assert "remoteAdapters" not in local
    assert erasure.purged_condition(removed)["message"] == (
        "Erased 1 Deployment; nothing made for this PersonalAI remains.")


def test_the_engine_is_the_personalais_own_else_the_operators():
    assert erasure.serving_engine({"spec": {"serving": {"engine": "vllm"}}}, "local") == "vllm"
    assert erasure.serving_engine({"spec": {"serving": {}}}, "tgi") == "tgi"
    assert erasure.serving_engine({}, "local") == "local"
