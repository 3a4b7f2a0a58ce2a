"""spec.serving.abTest: the plan, the server config's candidate, the stats read: literal inputs, plain asserts.
The stats read talks to a real HTTP server on localhost that speaks the stats contract."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from personalai_operator import ab_test, serving
from personalai_operator.models import ABTest, PersonalAISpec
from personalai_operator.promotion import Promotion
from personalai_operator.settings import OperatorSettings

pytestmark = pytest.mark.unit
NOW = "2026-12-01T12:00:00Z"
PAI = {"apiVersion": "personalai.dev/v1alpha1", "kind": "PersonalAI",
       "metadata": {"name": "luke", "namespace": "people", "uid": "u-1"}}
V2 = {"version": "v2-b", "manifestSha256": "b" * 64, "trainingRun": "luke-b"}
V1 = {"version": "v1-a", "manifestSha256": "a" * 64, "trainingRun": "luke-a"}
REJECTED = {"version": "v3-c", "rejected": "adapter v3-c was not promoted: perplexity"}
ADAPTERS = Promotion(V2, [REJECTED, V1])
STATS = {"versions": {"v2-b": {"sessions": 3, "replies": 9, "errors": 1, "ratingsUp": 2, "ratingsDown": 1,
                               "latencyMsP50": 120.5, "latencyMsP95": 300.0},
                      "v1-a": {"sessions": 2, "replies": 4, "errors": 0, "ratingsUp": 0, "ratingsDown": 2,
                               "latencyMsP50": None, "latencyMsP95": None}},
         "candidate": {"version": "v1-a", "share": 40}}


def plan(previous=None, pinned=None, promotion=ADAPTERS, **fields):
    return ab_test.plan_ab_test(ABTest.model_validate(fields), promotion, pinned, previous, NOW)


def test_no_ab_test_no_plan_and_a_removed_running_one_ends_dropped():
    assert ab_test.plan_ab_test(None, ADAPTERS, None, None, NOW) is None
    assert ab_test.plan_ab_test(None, ADAPTERS, None, {"phase": "Promoted", "candidateVersion": "v1-a"}, NOW) is None
    removed = ab_test.plan_ab_test(None, ADAPTERS, None, {"phase": "Running", "candidateVersion": "v1-a",
                                                         "share": 40}, NOW)
    assert removed.phase == "Dropped" and removed.candidate is None and "spec.serving.abTest was removed" in removed.message


def test_a_passed_history_entry_runs_as_candidate_with_its_recorded_digest_and_share():
    running = plan(candidateVersion="v1-a", share=40)
    assert running.phase == "Running" and running.promotion is None
    assert running.candidate == {"version": "v1-a", "manifestSha256": "a" * 64, "share": 40}
    assert "v1-a" in running.message and "v2-b" in running.message
    assert plan(candidateVersion="v1-a").candidate["share"] == 50  # the spec's default


@pytest.mark.parametrize(("fields", "pinned", "words"), [
    ({"candidateVersion": "v9-never"}, None, "spec.serving.abTest.candidateVersion v9-never is not an adapter"),
    ({"candidateVersion": "v3-c"}, None, "spec.serving.abTest.candidateVersion v3-c did not pass validation"),
    ({"candidateVersion": "v2-b"}, None, "spec.serving.abTest.candidateVersion v2-b is the current adapter"),
    ({"candidateVersion": "v1-a"}, "v1-a", "spec.serving.adapterVersion pins v1-a"),
])
def test_anything_but_another_passed_adapter_of_its_own_is_invalid_and_serves_no_candidate(fields, pinned, words):
    invalid = plan(pinned=pinned, **fields)
    assert invalid.phase == "Invalid" and words in invalid.message
    assert invalid.candidate is None and invalid.promotion is None
    # The rejected adapter's reason is not repeated: the message says only which field is wrong.
    assert "perplexity" not in invalid.message


def test_promote_makes_the_candidate_current_as_promotion_does():
    promoted = plan(candidateVersion="v1-a", decision="Promote")
    assert promoted.phase == "Promoted" and promoted.candidate is None
    assert promoted.promotion.current == {**V1, "promotedAt": NOW}
    assert [r["version"] for r in promoted.promotion.history] == ["v2-b", "v3-c"]
    assert "v1-a" in promoted.message and "v2-b" in promoted.message


def test_a_decided_test_stays_decided_when_a_newer_adapter_is_promoted_later():
    previous = {"candidateVersion": "v1-a", "phase": "Promoted", "message": "Candidate v1-a was promoted over v2-b."}
    later = Promotion({"version": "v4-d"}, [V1, V2])
    kept = plan(previous, promotion=later, candidateVersion="v1-a", decision="Promote")
    assert kept.phase == "Promoted" and kept.promotion is None and kept.candidate is None
    assert kept.message == previous["message"]


def test_drop_stops_serving_the_candidate_and_keeps_the_current_one():
    dropped = plan(candidateVersion="v1-a", decision="Drop")
    assert dropped.phase == "Dropped" and dropped.candidate is None and dropped.promotion is None
    assert "v1-a" in dropped.message and "v2-b stays current" in dropped.message


def test_share_and_decision_are_bounded_by_the_spec():
    with pytest.raises(ValueError, match="share"):
        ABTest.model_validate({"candidateVersion": "v1-a", "share": 101})
    with pytest.raises(ValueError, match="decision"):
        ABTest.model_validate({"candidateVersion": "v1-a", "decision": "Maybe"})


def test_the_server_config_carries_the_candidate_beside_the_adapter():
    spec = PersonalAISpec.model_validate({"displayName": "Luke",
                                          "reflections": {"secretRef": {"name": "r", "key": "r.jsonl"}}})
    candidate = plan(candidateVersion="v1-a", share=40).candidate
    config = serving.build_server_config(PAI, spec, OperatorSettings(), "v2-b", "b" * 64, candidate)
    assert config["candidate"] == {"version": "v1-a", "manifestSha256": "a" * 64, "share": 40}
    assert config["adapter"]["version"] == "v2-b"
    assert "candidate" not in serving.build_server_config(PAI, spec, OperatorSettings(), "v2-b", "b" * 64)
    # No second model slot and no new pod: the candidate is hot-loaded by the same server.
    assert serving.restart_hash(config) == serving.restart_hash(
        serving.build_server_config(PAI, spec, OperatorSettings(), "v2-b", "b" * 64))
    deployment = serving.build_server_deployment(PAI, OperatorSettings(), config)
    assert deployment["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"][
        "personalai.dev/model-slot"] == "1"


def test_the_server_config_with_a_candidate_validates_against_the_servers_model():
    from personalai_server.config import ServerConfig

    spec = PersonalAISpec.model_validate({"displayName": "Luke",
                                          "reflections": {"secretRef": {"name": "r", "key": "r.jsonl"}}})
    config = serving.build_server_config(PAI, spec, OperatorSettings(), "v2-b", "b" * 64,
                                         plan(candidateVersion="v1-a", share=40).candidate)
    assert ServerConfig.model_validate(config).candidate.share == 40


def test_stats_become_status_versions_and_ratings_without_nulls():
    versions = ab_test.parse_stats(json.dumps(STATS).encode())
    assert versions["v2-b"] == STATS["versions"]["v2-b"]
    assert versions["v1-a"] == {"sessions": 2, "replies": 4, "errors": 0, "ratingsUp": 0, "ratingsDown": 2}
    assert ab_test.ratings_of(versions, None) == {"v2-b": {"up": 2, "down": 1}, "v1-a": {"up": 0, "down": 2}}
    # A version the server no longer lists keeps its last counts (the status patch merges maps).
    assert ab_test.ratings_of(versions, {"v0-z": {"up": 1, "down": 0}})["v0-z"] == {"up": 1, "down": 0}


@pytest.mark.parametrize(("body", "words"), [
    (b"not json", "no `versions` object"),
    (b'{"versions": []}', "`versions` is not an object"),
    (b'{"versions": {"v1": {"sessions": -1}}}', "versions.<version>.sessions"),
    (b'{"versions": {"v1": {"ratingsUp": "many"}}}', "versions.<version>.ratingsUp"),
])
def test_a_malformed_stats_answer_is_an_error_naming_the_field(body, words):
    with pytest.raises(ValueError, match=words.replace(".", r"\.").replace("<", ".").replace(">", ".")):
        ab_test.parse_stats(body)


def test_figures_move_observed_at_only_when_they_change_and_an_unreachable_server_keeps_them():
    running = plan(candidateVersion="v1-a", share=40)
    versions = ab_test.parse_stats(json.dumps(STATS).encode())
    first = ab_test.ab_test_status(running, versions, None, None, NOW)
    assert first == {"candidateVersion": "v1-a", "share": 40, "phase": "Running", "message": running.message,
                     "versions": versions, "observedAt": NOW}
    assert ab_test.ab_test_status(running, versions, None, first, "2026-12-01T12:05:00Z") == first
    unreachable = ab_test.ab_test_status(running, None, "URLError", first, "2026-12-01T12:10:00Z")
    assert unreachable["versions"] == versions and unreachable["observedAt"] == NOW
    assert "could not be read (URLError)" in unreachable["message"] and NOW in unreachable["message"]


class _StatsServer(BaseHTTPRequestHandler):
    """The chat server's stats route as the contract has it: bearer auth, counts only."""

    def do_GET(self):  # noqa: N802 (http.server's name)
        if self.path != ab_test.STATS_PATH or self.headers.get("Authorization") != "Bearer t0ken":
            self.send_response(401 if self.path == ab_test.STATS_PATH else 404)
            self.end_headers()
            return
        body = json.dumps(STATS).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_):
        pass


@pytest.fixture
def stats_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _StatsServer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def test_the_stats_request_reads_a_real_server_under_the_persons_token(stats_server):
    import urllib.error
    import urllib.request

    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(ab_test.stats_request(stats_server, "t0ken"), timeout=5) as response:
        assert ab_test.parse_stats(response.read())["v2-b"]["replies"] == 9
    with pytest.raises(urllib.error.HTTPError) as refused:
        opener.open(ab_test.stats_request(stats_server, "wrong"), timeout=5)
    assert refused.value.code == 401


def test_the_status_carries_the_ab_test_ratings_and_a_promotes_adapters():
    from personalai_operator.personalai_status import DataVerdict, derive_personalai_status
    from personalai_operator.serving_status import ServingObservation

    promoted = plan(candidateVersion="v1-a", decision="Promote")
    ab_status = ab_test.ab_test_status(promoted, None, None, None, NOW)
    observed = ServingObservation(True, "Ready", "ready", "v1-a", "http://luke-chat.people.svc:8080",
                                  ab_test=ab_status, ratings={"v1-a": {"up": 1, "down": 0}},
                                  promotion=promoted.promotion)
    fields = derive_personalai_status(DataVerdict(True, "Ready", "ok"), None, ADAPTERS, observed, {}, 1, NOW)
    assert fields["currentAdapter"]["version"] == "v1-a"
    assert [r["version"] for r in fields["adapterHistory"]] == ["v2-b", "v3-c"]
    assert fields["abTest"]["phase"] == "Promoted" and fields["ratings"] == {"v1-a": {"up": 1, "down": 0}}
    # Without figures or a test, neither field is in the patch: what the status has stays.
    plain = derive_personalai_status(DataVerdict(True, "Ready", "ok"), None, ADAPTERS,
                                     ServingObservation(True, "Ready", "ready", "v2-b"), {}, 1, NOW)
    assert "abTest" not in plain and "ratings" not in plain and plain["currentAdapter"] == V2
