"""The chart as `helm template` renders it: least-privilege RBAC per watched namespace, CRDs that
survive uninstall, and NetworkPolicies for trainer and chat-server pods. No cluster: the real helm
binary of the local control plane's toolchain, rendering only.
"""

import json
import subprocess
from pathlib import Path

import pytest
import yaml

from devcluster import binaries
from personalai_operator import manifests, serving
from personalai_operator.models import PersonalAISpec, TrainingRunSpec
from personalai_operator.settings import OperatorSettings

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[3]
CHART = ROOT / "charts" / "personalai"
RELEASE_NS = "personalai-system"
WATCHED = ("family", "friends")
READ = {"get", "list", "watch"}


@pytest.fixture(scope="module")
def helm() -> Path:
    return binaries.build() / "helm"


@pytest.fixture(scope="module")
def render(helm):
    def render(*args: str, namespace: str = RELEASE_NS) -> list[dict]:
        out = subprocess.run([str(helm), "template", "r", str(CHART), "-n", namespace,
                              "--set", "watchNamespaces={" + ",".join(WATCHED) + "}", *args],
                             capture_output=True, text=True, check=True, timeout=60).stdout
        return [doc for doc in yaml.safe_load_all(out) if doc]
    return render


def _of(docs: list[dict], kind: str) -> list[dict]:
    return [doc for doc in docs if doc["kind"] == kind]


def _operator_rbac(docs: list[dict], kind: str) -> list[dict]:
    """The operator's Roles, ClusterRoles and bindings (the gateway's are its own: test_chart_gateway)."""
    return [doc for doc in _of(docs, kind) if doc["metadata"]["name"] == "r-operator"]


def _grants(rules: list[dict]) -> set[tuple[str, str, str]]:
    return {(group, resource, verb) for rule in rules for group in rule["apiGroups"]
            for resource in rule["resources"] for verb in rule["verbs"]}


def _role_in(docs: list[dict], namespace: str) -> dict:
    return next(role for role in _operator_rbac(docs, "Role") if role["metadata"]["namespace"] == namespace)


# ---- RBAC ----------------------------------------------------------------------------------------

def test_cluster_wide_the_operator_only_reads_and_advertises_model_slots(render):
    docs = render()
    (cluster_role,) = _operator_rbac(docs, "ClusterRole")
    writes = {grant for grant in _grants(cluster_role["rules"]) if grant[2] not in READ}
    assert writes == {("", "nodes/status", "patch")}
    resources = {resource for _, resource, _ in _grants(cluster_role["rules"])}
    assert not resources & {"secrets", "configmaps", "jobs", "deployments", "serviceaccounts", "roles"}
    for role in _of(docs, "ClusterRole") + _of(docs, "Role"):
        for rule in role["rules"]:
            assert "*" not in rule["apiGroups"] + rule["resources"] + rule["verbs"], rule


def test_a_role_per_watched_namespace_and_only_events_in_the_release_namespace(render):
    docs = render()
    roles = _operator_rbac(docs, "Role")
    assert sorted(role["metadata"]["namespace"] for role in roles) == sorted([*WATCHED, RELEASE_NS])
    assert _grants(_role_in(docs, RELEASE_NS)["rules"]) == {("", "events", "create")}
    assert _grants(_role_in(docs, "family")["rules"]) == _grants(_role_in(docs, "friends")["rules"])
    bindings = _operator_rbac(docs, "RoleBinding")
    for binding in bindings:
        assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "r-operator"}
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "r-operator", "namespace": RELEASE_NS}]
    assert len(bindings) == len(roles)


def test_a_watched_release_namespace_gets_the_full_role_only(render):
    docs = render(namespace="family")
    assert sorted(role["metadata"]["namespace"] for role in _operator_rbac(docs, "Role")) == sorted(WATCHED)


def test_secrets_can_be_read_one_by_name_and_created_never_listed_or_changed(render):
    secrets = {verb for _, resource, verb in _grants(_role_in(render(), "family")["rules"]) if resource == "secrets"}
    assert secrets == {"get", "create"}


RUN = {"apiVersion": "personalai.dev/v1alpha1", "kind": "TrainingRun",
       "metadata": {"name": "luke-3f9a2c1b", "namespace": "family", "uid": "run-uid"}}
PAI = {"apiVersion": "personalai.dev/v1alpha1", "kind": "PersonalAI",
       "metadata": {"name": "luke", "namespace": "family", "uid": "pai-uid"}}
RUN_SPEC = TrainingRunSpec.model_validate({
    "personalAI": "luke", "adapterVersion": "v1-3f9a2c1b", "dataVersion": "sha256:" + "0" * 64,
    "reflections": {"secretRef": {"name": "luke-reflections", "key": "luke.jsonl"}}})
PAI_SPEC = PersonalAISpec.model_validate({"displayName": "Luke",
                                          "reflections": {"secretRef": {"name": "r", "key": "r.jsonl"}}})
SETTINGS = OperatorSettings()
SERVER_CONFIG = serving.build_server_config(PAI, PAI_SPEC, SETTINGS, "v1-3f9a2c1b")


def test_the_operator_holds_everything_it_grants_the_trainer(render):
    """RBAC refuses a Role that grants more than its creator holds (escalation prevention)."""
    trainer_role = manifests.build_role(RUN, "luke")
    assert _grants(trainer_role["rules"]) <= _grants(_role_in(render(), "family")["rules"])


def test_the_operator_may_create_everything_its_builders_make(render):
    made = [*manifests.build_run_children(RUN, RUN_SPEC, "Luke", SETTINGS),
            manifests.build_training_run(PAI, PAI_SPEC, "luke-3f9a2c1b", RUN_SPEC.data_version, "v1-3f9a2c1b"),
            manifests.build_artifacts_claim(PAI, SETTINGS), manifests.build_model_cache_claim("family", SETTINGS),
            serving.build_auth_secret(PAI, "token"), serving.build_metrics_secret("family", "token"),
            serving.build_data_claim(PAI, SETTINGS),
            serving.build_server_config_map(PAI, SERVER_CONFIG),
            serving.build_server_deployment(PAI, SETTINGS, SERVER_CONFIG), serving.build_server_service(PAI)]
    grants = _grants(_role_in(render(), "family")["rules"])
    for manifest in made:
        group = manifest["apiVersion"].rpartition("/")[0]
        assert (group, manifest["kind"].lower() + "s", "create") in grants, manifest["kind"]


# ---- CRDs ----------------------------------------------------------------------------------------

def test_crds_are_kept_on_uninstall_by_default_and_otherwise_equal_to_crds_folder(render):
    source = {doc["metadata"]["name"]: doc for doc in map(yaml.safe_load, map(Path.read_text,
                                                                               (ROOT / "crds").glob("*.yaml")))}
    rendered = _of(render(), "CustomResourceDefinition")
    assert sorted(crd["metadata"]["name"] for crd in rendered) == sorted(source)
    for crd in rendered:
        assert crd["metadata"].pop("annotations") == {"helm.sh/resource-policy": "keep"}
        assert crd == source[crd["metadata"]["name"]]


def test_crds_without_keep_carry_no_policy_and_install_false_renders_none(render):
    unkept = _of(render("--set", "crds.keep=false"), "CustomResourceDefinition")
    assert len(unkept) == 2 and all("annotations" not in crd["metadata"] for crd in unkept)
    assert _of(render("--set", "crds.install=false"), "CustomResourceDefinition") == []


# ---- NetworkPolicies -----------------------------------------------------------------------------

def _policies(docs: list[dict], namespace: str) -> dict[str, dict]:
    return {doc["metadata"]["name"]: doc["spec"] for doc in _of(docs, "NetworkPolicy")
            if doc["metadata"]["namespace"] == namespace}


def test_trainer_pods_reach_only_dns_the_api_server_and_a_remote_model_cache(render):
    mirror = {"to": [{"ipBlock": {"cidr": "10.20.0.0/24"}}], "ports": [{"protocol": "TCP", "port": 443}]}
    docs = render("--set", "networkPolicy.apiServer.cidrs={10.0.0.1/32}",
                  "--set-json", f"networkPolicy.modelCacheEgress={json.dumps([mirror])}")
    trainer = _policies(docs, "friends")["r-trainer"]
    assert trainer["podSelector"] == {"matchLabels": {"app.kubernetes.io/managed-by": "personalai-operator",
                                                      "personalai.dev/component": "trainer"}}
    assert trainer["policyTypes"] == ["Egress"]
    dns, api, cache = trainer["egress"]
    assert dns["to"] == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
                          "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}]
    assert {(port["protocol"], port["port"]) for port in dns["ports"]} == {("UDP", 53), ("TCP", 53)}
    assert api == {"to": [{"ipBlock": {"cidr": "10.0.0.1/32"}}],
                   "ports": [{"protocol": "TCP", "port": 443}, {"protocol": "TCP", "port": 6443}]}
    assert cache == mirror


def test_without_known_api_server_addresses_trainers_get_dns_only(render):
    """`helm template` cannot look up the `kubernetes` EndpointSlice: the policy fails closed."""
    (dns,) = _policies(render(), "family")["r-trainer"]["egress"]
    assert {port["port"] for port in dns["ports"]} == {53}


def test_chat_servers_accept_only_the_gateway_and_the_operator_on_their_http_port(render):
    docs = render("--set", "networkPolicy.gateway.namespace=edge",
                  "--set", "networkPolicy.gateway.podLabels.app=gateway")
    server = _policies(docs, "family")["r-chat-server"]
    assert server["podSelector"] == {"matchLabels": {"app.kubernetes.io/managed-by": "personalai-operator",
                                                     "personalai.dev/component": "server"}}
    assert server["policyTypes"] == ["Ingress"]
    assert server["ingress"] == [{
        "from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "edge"}},
                  "podSelector": {"matchLabels": {"app": "gateway", "app.kubernetes.io/name": "ingress-nginx"}}},
                 # The chart's own gateway (gateway.enabled, the default), in the release namespace.
                 {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": RELEASE_NS}},
                  "podSelector": {"matchLabels": {"app.kubernetes.io/name": "personalai", "app.kubernetes.io/instance": "r",
                                                  "app.kubernetes.io/component": "gateway"}}},
                 # The operator: status.abTest and status.ratings from the server's stats; erasure's /admin/forget.
                 {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": RELEASE_NS}},
                  "podSelector": {"matchLabels": {"app.kubernetes.io/name": "personalai", "app.kubernetes.io/instance": "r",
                                                  "app.kubernetes.io/component": "operator"}}}],
        "ports": [{"protocol": "TCP", "port": "http"}]}]
    pod = serving.build_server_deployment(PAI, SETTINGS, SERVER_CONFIG)["spec"]["template"]["spec"]
    assert "http" in {port["name"] for port in pod["containers"][0]["ports"]}, "the policy's port is the server's"


def test_default_deny_is_opt_in_and_per_watched_namespace(render):
    assert set(_policies(render(), "family")) == {"r-trainer", "r-chat-server"}
    docs = render("--set", "networkPolicy.defaultDeny=true")
    for namespace in WATCHED:
        assert _policies(docs, namespace)["r-default-deny"] == {"podSelector": {},
                                                                "policyTypes": ["Ingress", "Egress"]}
    assert _of(render("--set", "networkPolicy.enabled=false"), "NetworkPolicy") == []


def test_default_deny_refuses_to_cut_off_an_operator_in_a_watched_namespace(helm):
    result = subprocess.run([str(helm), "template", "r", str(CHART), "-n", "family", "--set",
                             "watchNamespaces={family}", "--set", "networkPolicy.defaultDeny=true"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and "networkPolicy.defaultDeny" in result.stderr


@pytest.mark.parametrize(("setting", "field"), [
    ("networkPolicy.apiServer.cidrs={10.0.0.1}", "/networkPolicy/apiServer/cidrs/0"),
    ("networkPolicy.gateway.namespace=Not_A_Namespace", "/networkPolicy/gateway/namespace"),
    ("crds.keep=maybe", "/crds/keep"),
])
def test_bad_values_are_refused_naming_the_field(helm, setting, field):
    result = subprocess.run([str(helm), "template", "r", str(CHART), "--set", setting],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and field in result.stderr, result.stderr
