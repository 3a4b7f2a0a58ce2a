"""Property-based fuzz of the HTTP API from its own OpenAPI document (issue 13), with schemathesis.

The document is fetched from the running server (under the token, as a client gets it); every
operation in it gets EXAMPLES_PER_OPERATION generated requests, valid and not, sent with the test
token to the real app under uvicorn with the tiny model. No answer may be a 5xx, none may take
longer than REQUEST_TIMEOUT_SECONDS, and each must be a status code and body the document declares
for that operation. Examples are derandomized so a failure reproduces; limits.maxTokens is small (above
TGI's default max_new_tokens of 20) so each generation is a few tokens, and the whole run stays within TOTAL_SECONDS on 2 CPU cores.
"""

from __future__ import annotations

import time

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance, status_code_conformance
from server_harness import ThreadServer, auth, server_config

pytestmark = pytest.mark.model

EXAMPLES_PER_OPERATION = 20
REQUEST_TIMEOUT_SECONDS = 30
TOTAL_SECONDS = 120
CHECKS = [not_a_server_error, status_code_conformance, response_schema_conformance]


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_model_dir, artifacts_dir):
    config = server_config(
        tmp_path_factory.mktemp("fuzz"), tiny_model_dir, artifacts_dir, adapter={"version": "v1-aaaa"},
        conversation={"maxTokens": 4},
        # Generous rate and session caps: the fuzz explores the API, not the 429s of its own volume.
        limits={"maxTokens": 24, "requestsPerMinute": 100_000, "maxSessionsPerToken": 100_000, "concurrentStreams": 8},
    )
    with ThreadServer(config) as running:
        yield running


@pytest.mark.timeout(TOTAL_SECONDS + 60)
def test_every_operation_answers_as_its_document_says(server):
    document = httpx.get(f"{server.url}/openapi.json", headers=auth(), timeout=10)
    assert document.status_code == 200, document.text
    schema = schemathesis.openapi.from_dict(document.json())
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 15, [operation.label for operation in operations]
    started = time.monotonic()
    for operation in operations:

        # Requests that fit the document and requests that break it, mixed.
        @given(case=st.one_of(operation.as_strategy(GenerationMode.POSITIVE), operation.as_strategy(GenerationMode.NEGATIVE)))
        @settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, database=None, derandomize=True,
                  phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
        def answers_as_documented(case) -> None:
            case.call_and_validate(base_url=server.url, headers=auth(), checks=CHECKS,
                                   timeout=REQUEST_TIMEOUT_SECONDS)

        answers_as_documented()
        elapsed = time.monotonic() - started
        assert elapsed < TOTAL_SECONDS, f"fuzzing took {elapsed:.0f}s by {operation.label}"
