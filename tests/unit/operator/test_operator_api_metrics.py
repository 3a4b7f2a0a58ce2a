"""The label the operator counts its API requests under: the resource, never a name or a namespace."""

from __future__ import annotations

import pytest

from personalai_operator.metrics import request_resource

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(("path", "resource"), [
    ("/api/v1/namespaces/family/secrets/luke-chat-token", "secrets"),
    ("/apis/personalai.dev/v1alpha1/namespaces/family/trainingruns/luke-3f9a2c1b/status", "trainingruns/status"),
    ("/apis/batch/v1/namespaces/family/jobs", "jobs"),
    ("/api/v1/namespaces/family/events?limit=1", "events"),
    ("/api/v1/namespaces/family", "namespaces"),
    ("/api/v1/nodes/gpu-0/status", "nodes/status"),
    ("/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", "selfsubjectaccessreviews"),
    ("/api/v1", "discovery"),
    ("/version", "other"),
])
def test_a_request_is_counted_by_its_resource_and_subresource(path, resource):
    assert request_resource(path) == resource


def test_no_name_or_namespace_reaches_the_label():
    label = request_resource("/api/v1/namespaces/the-smiths/configmaps/luke-run-config")
    assert "smiths" not in label and "luke" not in label
