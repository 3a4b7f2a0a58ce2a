"""Fixtures shared by every tier.

`cluster` gives the real local control plane (hack/devcluster): reused when one is already up,
otherwise started for this session and stopped at its end. A test that needs it and cannot get it
fails; it is never skipped.
"""

from __future__ import annotations

import os
import re
import uuid

import pytest


@pytest.fixture(scope="session")
def cluster():
    from devcluster.controlplane import ControlPlane

    plane = ControlPlane()
    started_here = not plane.healthy()
    plane.up()
    os.environ["KUBECONFIG"] = str(plane.kubeconfig)
    yield plane
    if started_here and not os.environ.get("PERSONALAI_KEEP_CLUSTER"):
        plane.down()


@pytest.fixture
def namespace(cluster, request):
    """A fresh namespace for one test, deleted afterwards (the garbage collector clears its contents)."""
    stem = re.sub(r"[^a-z0-9-]", "-", request.node.name.lower())[:40].strip("-")
    name = f"{stem}-{uuid.uuid4().hex[:5]}"
    cluster.kubectl("create", "namespace", name)
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false", "--ignore-not-found", check=False)
