"""The name an adapter has in a vLLM that several people's chat servers share."""

import pytest

from personalai_server.engines.vllm import remote_adapter_name

pytestmark = pytest.mark.unit


def test_the_same_version_of_two_people_or_two_contents_gets_two_names():
    luke = remote_adapter_name("luke", "v1-1eed4f6c", "ab" * 32)
    assert luke == "luke--v1-1eed4f6c--abababababababab"
    assert remote_adapter_name("zoe", "v1-1eed4f6c", "ab" * 32) != luke
    assert remote_adapter_name("luke", "v1-1eed4f6c", "cd" * 32) != luke
