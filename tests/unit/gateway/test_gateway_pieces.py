"""The gateway's pure pieces: the training-time estimate, the brief's config mapped and validated,
the token index, SSE framing, the metrics event, hop-by-hop header filtering, settings."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from personalai_gateway.estimate import WORDS_TO_TOKENS, duration_words, estimate
from personalai_gateway.proxy import SERVER_OWN, chat_server_path, forwarded_headers
from personalai_gateway.settings import GatewaySettings
from personalai_gateway.sse import event_frame, heartbeat_frame, parse_stream, retry_frame
from personalai_gateway.start import BriefConfig, ConfigError, answer_config, merged_training, training_changes
from personalai_gateway.streams import StreamSlots
from personalai_gateway.tokens import Person, TokenIndex
from personalai_gateway.views import latest_run, progress_event, readiness, training_status

pytestmark = pytest.mark.unit

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
STORED_TRAINING = {"epochs": 4, "learningRate": 0.0002, "batchSize": "auto", "gradientAccumulationSteps": 1,
                   "warmupSteps": 10, "validationSplit": 0.1, "quantization": "nf4", "attention": "auto",
                   "dynamicBatching": True, "augmentPhrasings": 2}


# ---- the estimate -----------------------------------------------------------------------------

def test_estimate_is_tokens_trained_over_throughput_and_says_so():
    guess = estimate({"totalWords": 10_000}, {**STORED_TRAINING, "epochs": 2}, throughput=2500.0,
                     gpu_class="rtx-5090", now=NOW)
    tokens = round(10_000 * WORDS_TO_TOKENS)
    assert guess.tokens == round(tokens * 0.9 * 3 * 2)  # training split x (1 + 2 phrasings) x epochs
    assert guess.seconds == round(guess.tokens / 2500)
    assert (guess.completion - NOW).total_seconds() == guess.seconds
    assert guess.basis.startswith("estimate:") and "rtx-5090" in guess.basis and "10,000 words" in guess.basis


def test_a_token_count_in_the_assessment_is_used_as_it_is():
    guess = estimate({"totalWords": 10_000, "totalTokens": 1000}, {**STORED_TRAINING, "augmentPhrasings": 0,
                                                                    "epochs": 1}, 100.0, "cpu", NOW)
    assert guess.tokens == 900 and guess.seconds == 9 and "token count" in guess.basis


def test_more_epochs_or_a_slower_gpu_take_longer():
    base = estimate({"totalWords": 5000}, STORED_TRAINING, 2500.0, "rtx-5090", NOW).seconds
    assert estimate({"totalWords": 5000}, {**STORED_TRAINING, "epochs": 8}, 2500.0, "rtx-5090", NOW).seconds > base
    assert estimate({"totalWords": 5000}, STORED_TRAINING, 90.0, "cpu", NOW).seconds > base


@pytest.mark.parametrize(("seconds", "words"), [(30, "under a minute"), (60, "about 1 minute"),
                                                (200, "about 3 minutes"), (3600, "about 1 hour"),
                                                (7800, "about 2 hours 10 minutes")])
def test_durations_read_as_people_say_them(seconds, words):
    assert duration_words(seconds) == words


# ---- the brief's config -----------------------------------------------------------------------

def test_each_knob_lands_on_its_spec_training_field():
    config = BriefConfig.model_validate({"epochs": 3, "learningRate": 0.0001, "batchSize": 4,
                                         "enableFlashAttention2": True, "enableDynamicBatching": False,
                                         "gradientAccumulationSteps": 4, "warmupSteps": 5, "validationSplit": 0.2})
    assert training_changes(config) == {"epochs": 3, "learningRate": 0.0001, "batchSize": 4,
                                        "attention": "flash_attention_2", "dynamicBatching": False,
                                        "gradientAccumulationSteps": 4, "warmupSteps": 5, "validationSplit": 0.2}
    assert training_changes(BriefConfig.model_validate({"enableFlashAttention2": False})) == {"attention": "sdpa"}
    assert training_changes(BriefConfig()) == {}


@pytest.mark.parametrize(("config", "field"), [
    ({"epochs": 0}, "config.epochs"), ({"epochs": 101}, "config.epochs"),
    ({"learningRate": 0}, "config.learningRate"), ({"batchSize": 513}, "config.batchSize"),
    ({"gradientAccumulationSteps": 0}, "config.gradientAccumulationSteps"),
    ({"warmupSteps": -1}, "config.warmupSteps"), ({"validationSplit": 0.6}, "config.validationSplit"),
    ({"enableDynamicBatching": False}, "config.enableDynamicBatching"),  # the stored batchSize is "auto"
])
def test_out_of_bounds_knobs_are_refused_naming_the_brief_field(config, field):
    with pytest.raises(ConfigError) as refused:
        merged_training(STORED_TRAINING, training_changes(BriefConfig.model_validate(config)))
    assert refused.value.field == field and str(refused.value).startswith(field)


@pytest.mark.parametrize("config", [{"epochs": "3"}, {"enableFlashAttention2": "yes"}, {"unknownKnob": 1},
                                    {"batchSize": "big"}])
def test_wrong_types_and_unknown_knobs_do_not_parse(config):
    with pytest.raises(ValidationError):
        BriefConfig.model_validate(config)


def test_a_fixed_batch_size_may_turn_dynamic_batching_off():
    merged = merged_training(STORED_TRAINING, training_changes(
        BriefConfig.model_validate({"batchSize": 2, "enableDynamicBatching": False})))
    assert merged["batchSize"] == 2 and merged["dynamicBatching"] is False


def test_the_answer_config_names_method_and_precision_by_quantization():
    qlora = answer_config({"baseModel": "mistralai/Mistral-7B-Instruct-v0.3", "training": STORED_TRAINING})
    assert qlora["method"] == "QLoRA" and "4-bit" in qlora["precision"] and qlora["epochs"] == 4
    assert qlora["enableFlashAttention2"] == "auto"
    lora = answer_config({"training": {**STORED_TRAINING, "quantization": "none", "attention": "sdpa"}})
    assert lora["method"] == "LoRA" and lora["precision"] == "bf16" and lora["enableFlashAttention2"] is False


# ---- the token index --------------------------------------------------------------------------

def personalai(name: str, token: str | None, namespace: str = "people", **meta) -> dict:
    status = {"access": {"tokenSecret": f"{name}-chat-auth",
                         "tokenSha256": hashlib.sha256(token.encode()).hexdigest()}} if token else {}
    return {"metadata": {"name": name, "namespace": namespace, **meta}, "status": status}


def test_a_token_maps_to_exactly_its_own_personalai():
    index = TokenIndex()
    index.replace("", [personalai("ann", "ann-token-0123456789"), personalai("bob", "bob-token-0123456789"),
                       personalai("new", None)])
    assert index.authenticate("ann-token-0123456789") == Person("people", "ann")
    assert index.authenticate("bob-token-0123456789") == Person("people", "bob")
    assert index.authenticate("someone-else-0123456789") is None
    assert index.authenticate("") is None and index.authenticate(None) is None
    assert len(index) == 2  # a PersonalAI without a published hash has no token yet


def test_rotation_and_deletion_take_effect_at_once():
    index = TokenIndex()
    index.put(personalai("ann", "old-token-0123456789"))
    index.put(personalai("ann", "new-token-0123456789"))
    assert index.authenticate("old-token-0123456789") is None
    assert index.authenticate("new-token-0123456789") == Person("people", "ann")
    index.put(personalai("ann", "new-token-0123456789", deletionTimestamp="2026-12-01T12:00:00Z"))
    assert index.authenticate("new-token-0123456789") is None
    index.put(personalai("bob", "bob-token-0123456789"))
    index.remove(personalai("bob", None))
    assert len(index) == 0


def test_a_namespace_relist_replaces_only_that_namespace():
    index = TokenIndex()
    index.replace("", [personalai("ann", "ann-token-0123456789", "a"), personalai("bob", "bob-token-0123456789", "b")])
    index.replace("a", [])
    assert index.authenticate("ann-token-0123456789") is None
    assert index.authenticate("bob-token-0123456789") == Person("b", "bob")


def test_stream_slots_cap_each_person_separately():
    slots, ann, bob = StreamSlots(2), Person("p", "ann"), Person("p", "bob")
    assert slots.take(ann) and slots.take(ann) and not slots.take(ann)
    assert slots.take(bob)
    slots.give_back(ann)
    assert slots.take(ann)


# ---- SSE and the events -------------------------------------------------------------------------

def test_sse_frames_read_back_as_an_event_source_dispatches_them():
    body = (retry_frame(3000) + event_frame({"epoch": 0.5, "note": "line\nbreak"}, "41") + heartbeat_frame()
            + event_frame({"final": True}))
    assert body.startswith("retry: 3000\n\n")
    assert "id: 41\ndata: " in body and ": heartbeat\n\n" in body
    assert parse_stream(body) == [{"id": "41", "data": {"epoch": 0.5, "note": "line\nbreak"}},
                                  {"id": "41", "data": {"final": True}}]  # EventSource keeps the last id


def run(name: str, created: str, phase: str | None = None, **progress) -> dict:
    return {"metadata": {"name": name, "creationTimestamp": created, "resourceVersion": "7"},
            "status": {"phase": phase, "progress": progress} if phase else {}}


def test_the_metrics_event_uses_the_brief_names():
    event = progress_event(run("ann-1", "2026-12-01T10:00:00Z", "Running", epoch=1.5, totalEpochs=4, loss=1.25,
                               gpuUtilization=97, vramUsedMiB=20480, gpuTemperatureC=71, etaSeconds=300))
    assert {k: event[k] for k in ("epoch", "loss", "gpuUtilization", "vramUsage", "temperature",
                                  "estimatedTimeRemaining", "final")} == {
        "epoch": 1.5, "loss": 1.25, "gpuUtilization": 97, "vramUsage": 20480, "temperature": 71,
        "estimatedTimeRemaining": 300, "final": False}
    assert progress_event(run("ann-1", "2026-12-01T10:00:00Z", "Succeeded"))["final"] is True


def test_the_latest_run_is_the_newest():
    older, newer = run("ann-aaaa", "2026-12-01T10:00:00Z"), run("ann-bbbb", "2026-12-01T11:00:00Z")
    assert latest_run([newer, older]) is newer and latest_run([]) is None


def test_status_without_a_run_says_so_and_readiness_shows_the_levels():
    ann = {"metadata": {"name": "ann"}, "spec": {"suspend": True, "displayName": "Ann"},
           "status": {"dataAssessment": {"responses": 21, "level": "minimum", "message": "Ready."},
                      "conditions": [{"type": "DataReady", "status": "True"}]}}
    assert training_status(ann, None)["state"] == "NoRun"
    ready = readiness(ann)
    assert ready["ready"] and ready["suspended"] and ready["dataAssessment"]["responses"] == 21
    assert ready["levels"]["minimum"]["responses"] == 20 and ready["levels"]["optimal"]["responses"] == 100


# ---- the chat pass-through and the settings -------------------------------------------------------

def test_hop_by_hop_headers_and_those_connection_names_are_dropped():
    headers = [("Authorization", "Bearer t"), ("Connection", "keep-alive, X-Private-Hop"), ("Keep-Alive", "5"),
               ("X-Private-Hop", "1"), ("Transfer-Encoding", "chunked"), ("Host", "gateway"), ("Content-Length", "9"),
               ("Upgrade", "h2c"), ("TE", "trailers"), ("Content-Type", "application/json"), ("Accept", "text/event-stream")]
    assert forwarded_headers(headers) == [("Authorization", "Bearer t"), ("Content-Type", "application/json"),
                                          ("Accept", "text/event-stream")]
    assert forwarded_headers([("Date", "x"), ("Server", "uvicorn"), ("X-Chat", "1")], SERVER_OWN) == [("X-Chat", "1")]
    assert chat_server_path("chat/stream") == "/api/ai-echo/chat/stream"


def test_settings_name_the_variable_at_fault():
    settings = GatewaySettings.from_env({"PERSONALAI_GATEWAY_NAMESPACES": "a, b",
                                         "PERSONALAI_GATEWAY_THROUGHPUT_TOKENS_PER_SECOND": '{"rtx-5090": 3000, "cpu": 80}'})
    assert settings.namespaces == ["a", "b"] and settings.throughput == 3000
    with pytest.raises(ValidationError, match="PERSONALAI_GATEWAY_GPU_CLASS 'h100'"):
        GatewaySettings.from_env({"PERSONALAI_GATEWAY_GPU_CLASS": "h100"})
    with pytest.raises(ValidationError, match="THROUGHPUT"):
        GatewaySettings.from_env({"PERSONALAI_GATEWAY_THROUGHPUT_TOKENS_PER_SECOND": '{"rtx-5090": 0}'})
