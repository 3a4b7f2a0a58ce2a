"""The chart's monitoring as `helm template` renders it: the dashboard ConfigMap by default (for the
Grafana sidecar), prometheus-operator monitors only when asked for, and a dashboard whose every panel
has a data source and a query. Rendering only, with the real helm binary."""

import json
import subprocess
from pathlib import Path

import pytest
import yaml

from devcluster import binaries
from personalai_operator import naming, serving

pytestmark = pytest.mark.unit
CHART = Path(__file__).resolve().parents[3] / "charts" / "personalai"
MONITOR_KINDS = {"ServiceMonitor", "PodMonitor"}


@pytest.fixture(scope="module")
def render():
    helm = binaries.build() / "helm"

    def render(*sets: str) -> list[dict]:
        args = [arg for value in ("watchNamespaces={family,friends}", *sets) for arg in ("--set", value)]
        out = subprocess.run([str(helm), "template", "r", str(CHART), "-n", "personalai-system", *args],
                             capture_output=True, text=True, check=True, timeout=60).stdout
        return [doc for doc in yaml.safe_load_all(out) if doc]
    return render


def _dashboard_map(docs: list[dict]) -> dict:
    return next(doc for doc in docs if doc["kind"] == "ConfigMap" and doc["metadata"]["name"] == "r-dashboard")


def test_dashboard_configmap_by_default_without_monitors(render):
    docs = render()
    config_map = _dashboard_map(docs)
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert config_map["metadata"]["namespace"] == "personalai-system"
    assert json.loads(config_map["data"]["personalai.json"]) == json.loads((CHART / "dashboards/personalai.json").read_text())
    assert not [doc for doc in docs if doc["kind"] in MONITOR_KINDS]


def test_dashboard_label_and_namespace_are_configurable_and_it_can_be_off(render):
    config_map = _dashboard_map(render("monitoring.dashboard.labels.grafana_dashboard=null",
                                       "monitoring.dashboard.labels.team-dashboards=yes",
                                       "monitoring.dashboard.namespace=grafana"))
    assert config_map["metadata"]["labels"]["team-dashboards"] == "yes"
    assert "grafana_dashboard" not in config_map["metadata"]["labels"]
    assert config_map["metadata"]["namespace"] == "grafana"
    assert not [doc for doc in render("monitoring.dashboard.enabled=false") if doc["kind"] == "ConfigMap"
                and doc["metadata"]["name"] == "r-dashboard"]


def test_monitors_when_enabled_select_what_the_chart_and_operator_label(render):
    docs = render("monitoring.serviceMonitor.enabled=true", "monitoring.serviceMonitor.labels.release=kps",
                  "monitoring.serviceMonitor.serverAuthorization.name=reader",
                  "monitoring.serviceMonitor.serverAuthorization.key=token")
    services = {doc["metadata"]["name"]: doc for doc in docs if doc["kind"] == "Service"}
    monitors = {(doc["kind"], doc["metadata"]["namespace"], doc["metadata"]["name"]): doc
                for doc in docs if doc["kind"] in MONITOR_KINDS}
    assert set(monitors) == {("ServiceMonitor", "personalai-system", "r-operator"),
                             ("ServiceMonitor", "personalai-system", "r-gateway")} | {
        ("PodMonitor", ns, f"r-{component}") for ns in ("family", "friends") for component in ("server", "trainer")}
    assert all(monitor["metadata"]["labels"]["release"] == "kps" for monitor in monitors.values())
    for name in ("r-operator", "r-gateway"):  # each ServiceMonitor's selector and port find its Service
        spec = monitors[("ServiceMonitor", "personalai-system", name)]["spec"]
        service = services["r-operator-metrics" if name == "r-operator" else name]
        assert spec["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
        assert spec["endpoints"][0]["port"] in {port["name"] for port in service["spec"]["ports"]}
    # The operator's monitor selects the gateway's Service too, but finds no `metrics` port there.
    assert "metrics" not in {port["name"] for port in services["r-gateway"]["spec"]["ports"]}
    server = monitors[("PodMonitor", "family", "r-server")]["spec"]
    trainer = monitors[("PodMonitor", "family", "r-trainer")]["spec"]
    # The labels the operator's builders put on chat-server and trainer pods.
    server_pod = {**naming.personalai_labels("p"), naming.LABEL_COMPONENT: "server"}
    assert server["selector"]["matchLabels"].items() <= server_pod.items()
    assert trainer["selector"]["matchLabels"].items() <= naming.run_labels("p", "run").items()
    assert not server["selector"]["matchLabels"].items() <= naming.run_labels("p", "run").items()
    pod_label = "__meta_kubernetes_pod_label_" + naming.LABEL_PERSONALAI.replace(".", "_").replace("/", "_")
    for spec in (server, trainer):
        assert spec["podMetricsEndpoints"][0]["relabelings"] == [{"sourceLabels": [pod_label],
                                                                 "targetLabel": "personalai"}]
    assert server["podMetricsEndpoints"][0]["port"] == "http"
    assert server["podMetricsEndpoints"][0]["authorization"]["credentials"] == {"name": "reader", "key": "token"}
    assert trainer["podMetricsEndpoints"][0]["port"] == "metrics"
    assert "authorization" not in trainer["podMetricsEndpoints"][0]


def _server_endpoint(docs: list[dict], namespace: str = "family") -> dict:
    monitor = next(doc for doc in docs if doc["kind"] == "PodMonitor" and doc["metadata"]["name"] == "r-server"
                   and doc["metadata"]["namespace"] == namespace)
    return monitor["spec"]["podMetricsEndpoints"][0]


def test_chat_servers_are_scraped_with_the_operators_metrics_reader_secret_by_default(render):
    docs = render("monitoring.serviceMonitor.enabled=true")
    for namespace in ("family", "friends"):  # a PodMonitor's Secret is the one in its own namespace
        assert _server_endpoint(docs, namespace)["authorization"] == {
            "type": "Bearer", "credentials": {"name": serving.METRICS_SECRET_NAME, "key": serving.AUTH_KEY}}
    secret = serving.build_metrics_secret("family", "t" * 43)
    assert set(secret["stringData"]) == {_server_endpoint(docs)["authorization"]["credentials"]["key"]}


def _chat_server_ingress(docs: list[dict]) -> list[dict]:
    policy = next(doc for doc in docs if doc["kind"] == "NetworkPolicy" and doc["metadata"]["name"] == "r-chat-server"
                  and doc["metadata"]["namespace"] == "family")
    return policy["spec"]["ingress"]


def test_chat_servers_admit_prometheus_on_their_http_port_only_when_a_selector_names_it(render):
    closed = _chat_server_ingress(render())
    opened = _chat_server_ingress(render(
        "monitoring.prometheusSelector.namespaceSelector.matchLabels.kubernetes\\.io/metadata\\.name=monitoring",
        "monitoring.prometheusSelector.podSelector.matchLabels.app\\.kubernetes\\.io/name=prometheus"))
    prometheus = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}},
                  "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}}}
    assert prometheus not in closed[0]["from"]
    assert opened == [{**closed[0], "from": [*closed[0]["from"], prometheus]}]
    assert opened[0]["ports"] == [{"protocol": "TCP", "port": "http"}]


def test_every_panel_has_a_datasource_and_a_query():
    dashboard = json.loads((CHART / "dashboards/personalai.json").read_text())
    variables = {variable["name"]: variable for variable in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    assert {"namespace", "personalai"} <= set(variables)
    assert {panel["title"] for panel in dashboard["panels"] if panel["type"] == "row"} == {"Training", "Serving"}
    panels = [panel for panel in dashboard["panels"] if panel["type"] != "row"]
    assert panels
    for panel in panels:
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert panel["targets"] and all(target["expr"].strip() for target in panel["targets"]), panel["title"]
    assert len({panel["id"] for panel in dashboard["panels"]}) == len(dashboard["panels"])
