"""The watch cache's store (what it keeps, how events and the operator's own writes change it), its
scoping by namespace, and the client's token bucket. The LIST/WATCH stream itself runs against the
real API server in the cluster tier (every operator cluster test reads through it)."""

from __future__ import annotations

import pytest

from personalai_operator import watch_cache
from personalai_operator.kube import TokenBucket
from personalai_operator.naming import LABEL_MANAGED_BY, MANAGER
from personalai_operator.settings import OperatorSettings
from personalai_operator.watch_cache import (
    LAST_APPLIED,
    SOURCES,
    Informer,
    WatchCache,
    accept_header,
    selector_labels,
    trim,
)

pytestmark = pytest.mark.unit
OURS = {LABEL_MANAGED_BY: MANAGER}


def obj(name: str, namespace: str = "ns", uid: str | None = None, labels: dict[str, str] | None = None,
        **fields: object) -> dict:
    return {"metadata": {"name": name, "namespace": namespace, "uid": uid or f"uid-{name}",
                         "labels": OURS if labels is None else labels, "resourceVersion": "1"}, **fields}


def informer(kind: str = "Job", namespaces: tuple[str, ...] = ()) -> Informer:
    return WatchCache(list(namespaces), client_factory=lambda: None, kinds=[kind]).informers[(kind, None)]


def test_trim_drops_managed_fields_and_the_last_applied_copy_of_a_secret():
    secret = obj("token", data={"token": "c2VjcmV0"})
    secret["metadata"]["managedFields"] = [{"manager": "kubectl"}]
    secret["metadata"]["annotations"] = {LAST_APPLIED: '{"data": {"reflections.jsonl": "..."}}', "keep": "me"}
    kept = trim("Secret", secret)
    assert "managedFields" not in kept["metadata"]
    assert kept["metadata"]["annotations"] == {"keep": "me"}
    assert kept["data"] == {"token": "c2VjcmV0"}  # the operator's own token Secret is held whole


def test_a_pod_is_kept_only_as_far_as_the_operator_reads_it():
    pod = obj("p", spec={"nodeName": "gpu-0", "volumes": [{"name": "reflections", "secret": {"secretName": "s"}}],
                         "containers": [{"name": "trainer", "image": "x", "env": [{"name": "A", "value": "b"}],
                                         "resources": {"limits": {"nvidia.com/gpu": "1"}}}]},
              status={"phase": "Running"})
    kept = trim("Pod", pod)
    assert kept["spec"] == {"nodeName": "gpu-0",
                            "containers": [{"name": "trainer", "resources": {"limits": {"nvidia.com/gpu": "1"}}}]}
    assert kept["status"] == {"phase": "Running"}


def test_reflections_secrets_are_watched_as_metadata_only_and_only_our_own_secrets_whole():
    assert SOURCES["SecretMetadata"].metadata_only and not SOURCES["SecretMetadata"].selector
    assert not SOURCES["Secret"].metadata_only
    assert selector_labels(SOURCES["Secret"].selector) == OURS
    # Metadata in both forms, and no fallback to whole objects a server could choose instead.
    assert accept_header(SOURCES["SecretMetadata"], watching=False).endswith("as=PartialObjectMetadataList;g=meta.k8s.io;v=v1")
    assert accept_header(SOURCES["SecretMetadata"], watching=True).endswith("as=PartialObjectMetadata;g=meta.k8s.io;v=v1")
    assert accept_header(SOURCES["Secret"], watching=True) == "application/json"


def test_events_add_replace_and_delete_and_reads_are_copies():
    cache = informer()
    assert cache.apply_event("ADDED", obj("a", status={"active": 1})) == "1"
    cache.apply_event("MODIFIED", {**obj("a"), "status": {"succeeded": 1}})
    got = cache.get("ns", "a")
    assert got is not None and got["status"] == {"succeeded": 1}
    got["status"]["succeeded"] = 99  # a caller's change never reaches the store
    assert cache.get("ns", "a")["status"] == {"succeeded": 1}
    cache.apply_event("DELETED", obj("a"))
    assert cache.get("ns", "a") is None
    assert cache.apply_event("BOOKMARK", {"metadata": {"resourceVersion": "42"}}) == "42"


def test_select_filters_by_namespace_and_every_label():
    cache = informer()
    cache.replace([obj("a", labels={**OURS, "run": "r1"}), obj("b", labels={**OURS, "run": "r2"}),
                   obj("c", namespace="other", labels={**OURS, "run": "r1"})])
    assert [o["metadata"]["name"] for o in cache.select("ns", {"run": "r1"})] == ["a"]
    assert sorted(o["metadata"]["name"] for o in cache.select(None, {"run": "r1"})) == ["a", "c"]
    assert cache.select("ns", {"run": "r3"}) == []


def test_a_namespace_pattern_keeps_only_its_namespaces():
    cache = informer(namespaces=("team-*",))
    cache.replace([obj("a", namespace="team-1"), obj("b", namespace="kube-system")])
    cache.apply_event("ADDED", obj("c", namespace="default"))
    assert [o["metadata"]["name"] for o in cache.select(None, {})] == ["a"]


def test_pods_of_every_namespace_are_kept_since_they_hold_model_slots():
    cache = informer("Pod", namespaces=("team-*",))
    cache.replace([obj("mine", namespace="team-1", spec={}), obj("theirs", namespace="other", spec={})])
    assert sorted(o["metadata"]["name"] for o in cache.select(None, {})) == ["mine", "theirs"]
    assert [o["metadata"]["name"] for o in cache.select("team-1", {})] == ["mine"]


def test_scope_is_the_cluster_for_all_or_a_pattern_else_one_informer_per_namespace():
    assert set(WatchCache([], lambda: None, kinds=["Job"]).informers) == {("Job", None)}
    assert set(WatchCache(["a-*"], lambda: None, kinds=["Job"]).informers) == {("Job", None)}
    assert set(WatchCache(["a", "b"], lambda: None, kinds=["Job"]).informers) == {("Job", "a"), ("Job", "b")}


def test_only_a_ready_informer_answers_so_reads_go_to_the_api_until_the_first_list():
    cache = WatchCache(["a"], lambda: None, kinds=["Job"])
    assert cache.informer("Job", "a") is None
    cache.informers[("Job", "a")].replace([])
    assert cache.informer("Job", "a") is None  # replace alone is not the first LIST being in
    cache.informers[("Job", "a")].ready.set()
    assert cache.informer("Job", "a") is cache.informers[("Job", "a")]
    assert cache.informer("Job", "b") is None and cache.informer("Pod", "a") is None


def test_what_the_operator_deleted_stays_gone_until_the_watch_confirms_it():
    cache = informer()
    cache.apply_event("ADDED", obj("job", uid="old"))
    cache.forget("ns", "job")
    assert cache.get("ns", "job") is None
    cache.apply_event("MODIFIED", obj("job", uid="old"))  # an event from before the delete, late
    assert cache.get("ns", "job") is None
    cache.apply_event("ADDED", obj("job", uid="new"))  # the restarted run's fresh Job
    assert cache.get("ns", "job")["metadata"]["uid"] == "new"
    cache.apply_event("DELETED", obj("job", uid="old"))
    assert cache.get("ns", "job")["metadata"]["uid"] == "new"


def test_remember_fills_a_miss_but_never_overrides_the_watch_nor_takes_foreign_objects():
    cache = informer("Secret")
    cache.remember(obj("token", data={"token": "dA=="}))
    assert cache.get("ns", "token")["data"] == {"token": "dA=="}
    cache.apply_event("MODIFIED", obj("token", data={"token": "bmV3"}))
    cache.remember(obj("token", data={"token": "dA=="}))
    assert cache.get("ns", "token")["data"] == {"token": "bmV3"}
    cache.remember(obj("someone-elses", labels={}, data={"reflections.jsonl": "cGVyc29uYWw="}))
    assert cache.get("ns", "someone-elses") is None  # not made by the operator: not held


def test_token_bucket_allows_the_burst_then_paces_at_qps():
    now = [0.0]
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)

    bucket = TokenBucket(qps=10, burst=3, clock=lambda: now[0], sleep=sleep)
    assert [bucket.take() for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.take() == pytest.approx(0.1)
    assert bucket.take() == pytest.approx(0.2)  # reserved in order: the next waiter waits longer
    now[0] = 10.0  # a long quiet spell refills up to the burst, no further
    assert [bucket.take() for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.take() == pytest.approx(0.1)
    assert waits == pytest.approx([0.1, 0.2, 0.1])


def test_qps_burst_and_workers_are_settings_with_deliberate_defaults():
    defaults = OperatorSettings.from_env({})
    assert (defaults.api_qps, defaults.api_burst, defaults.workers) == (100.0, 200, 16)
    tuned = OperatorSettings.from_env({"PERSONALAI_API_QPS": "20", "PERSONALAI_API_BURST": "40",
                                       "PERSONALAI_WORKERS": "4"})
    assert (tuned.api_qps, tuned.api_burst, tuned.workers) == (20.0, 40, 4)
    with pytest.raises(ValueError, match="API_QPS"):
        OperatorSettings.from_env({"PERSONALAI_API_QPS": "0"})


def test_the_installed_cache_is_what_reads_use():
    cache = WatchCache([], lambda: None, kinds=["Job"])
    cache.informers[("Job", None)].ready.set()
    previous = watch_cache.install(cache)
    try:
        assert watch_cache.informer("Job", "any") is cache.informers[("Job", None)]
    finally:
        assert watch_cache.install(previous) is cache


def test_an_event_kopf_handed_over_is_kept_unless_the_watch_already_has_a_later_version():
    cache = informer()
    job = obj("job", uid="j")
    cache.apply_event("ADDED", {**job, "metadata": {**job["metadata"], "resourceVersion": "5"}})
    cache.observe("MODIFIED", {**job, "metadata": {**job["metadata"], "resourceVersion": "7"}, "status": {"ok": 1}})
    assert cache.get("ns", "job")["status"] == {"ok": 1}
    cache.observe("MODIFIED", {**job, "metadata": {**job["metadata"], "resourceVersion": "6"}, "status": {}})
    assert cache.get("ns", "job")["status"] == {"ok": 1}  # older than what is held: ignored
    cache.observe("DELETED", obj("job", uid="someone-else"))
    assert cache.get("ns", "job") is not None
    cache.observe("DELETED", job)
    assert cache.get("ns", "job") is None


def test_resource_versions_compare_as_numbers_when_they_are():
    assert watch_cache.newer("10", "9") and not watch_cache.newer("9", "10")
    assert watch_cache.newer("opaque", "10")  # unknown order: the version at hand wins


def test_what_is_handed_in_is_not_kept_by_reference():
    # kopf's body and the caller's dicts change after the call; the store holds the object's JSON.
    cache = informer()
    handed = obj("job", status={"active": 1})
    cache.observe("ADDED", handed)
    handed["status"]["active"] = 0
    handed["metadata"]["labels"] = {}
    assert cache.get("ns", "job")["status"] == {"active": 1}
    assert cache.select("ns", OURS) == [cache.get("ns", "job")]
