"""What the operator says when the API refuses an object: status and reason, never the object's content."""

import json

import pytest
from kubernetes.client.rest import ApiException

from personalai_operator.kube import describe_api_error

pytestmark = pytest.mark.unit

SECRET = "Luke's late wife Anna"


def refusal(status, http_reason, body):
    return ApiException(status=status, reason=http_reason, body=json.dumps(body) if isinstance(body, dict) else body)


def test_an_invalid_object_names_the_fields_and_the_reason_not_the_values():
    error = refusal(422, "Unprocessable Entity", {
        "kind": "Status", "status": "Failure", "reason": "Invalid", "code": 422,
        "message": f'ConfigMap "luke-chat-config" is invalid: data[config.json]: Invalid value: "{SECRET}"',
        "details": {"name": "luke-chat-config", "kind": "configmaps", "causes": [
            {"reason": "FieldValueInvalid", "message": f'Invalid value: "{SECRET}"', "field": "data[config.json]"},
            {"reason": "FieldValueTooLong", "message": "Too long", "field": "metadata.labels"}]}})
    assert describe_api_error(error) == "HTTP 422 Invalid (data[config.json], metadata.labels)"


def test_a_forbidden_create_gives_the_apis_reason():
    error = refusal(403, "Forbidden", {
        "kind": "Status", "status": "Failure", "reason": "Forbidden", "code": 403,
        "message": 'deployments.apps "luke-chat" is forbidden: exceeded quota: no-servers'})
    assert describe_api_error(error) == "HTTP 403 Forbidden"


@pytest.mark.parametrize("body", [None, "", "<html>gateway timeout</html>", "[1, 2]"])
def test_a_body_that_is_not_a_status_falls_back_to_the_http_reason(body):
    assert describe_api_error(refusal(504, "Gateway Timeout", body)) == "HTTP 504 Gateway Timeout"
