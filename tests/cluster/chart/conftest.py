"""Fixtures of the chart's cluster tests: a release of charts/personalai installed with the real helm
binary into the test's fresh `namespace`, and more fresh namespaces for it to watch (or not).

No operator process runs here: these tests check what the API server accepts and grants. The
release's own operator pod lands on a simulated node, where nothing runs it.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from devcluster.waiting import wait_for

REPO = Path(__file__).resolve().parents[3]
CHART = REPO / "charts" / "personalai"


@dataclass
class Release:
    cluster: Any
    name: str
    namespace: str

    @property
    def service_account(self) -> str:
        return f"system:serviceaccount:{self.namespace}:{self.name}-operator"

    def helm(self, command: str, *args: str):
        """`helm install|upgrade <release> <chart> -n <namespace> ARGS`, which must succeed."""
        result = self.cluster.helm(command, self.name, str(CHART), "-n", self.namespace, *args, check=False)
        assert result.returncode == 0, result.stderr
        return result

    def uninstall(self) -> str:
        return self.cluster.helm("uninstall", self.name, "-n", self.namespace, "--wait", "--timeout", "60s").stdout

    def installed(self) -> bool:
        return self.cluster.helm("status", self.name, "-n", self.namespace, check=False).returncode == 0


@pytest.fixture
def release(cluster, namespace):
    """A release name in `namespace`, not yet installed; uninstalled afterwards if the test left it."""
    chart_release = Release(cluster, f"chart-{uuid.uuid4().hex[:5]}", namespace)
    yield chart_release
    if chart_release.installed():  # its ClusterRole and ClusterRoleBinding would outlive the namespace
        cluster.helm("uninstall", chart_release.name, "-n", namespace, check=False)


@pytest.fixture
def new_namespace(cluster, namespace):
    """new_namespace(role) -> a fresh namespace named after the test's, deleted afterwards."""
    made: list[str] = []

    def make(role: str) -> str:
        name = f"{namespace}-{role}"
        cluster.kubectl("create", "namespace", name)
        made.append(name)
        wait_for(lambda: cluster.kubectl("get", "serviceaccount", "default", "-n", name, check=False).returncode == 0,
                 timeout=30, message=f"the default ServiceAccount of {name}")
        return name

    yield make
    for name in made:
        cluster.kubectl("delete", "namespace", name, "--wait=false", "--ignore-not-found", check=False)
