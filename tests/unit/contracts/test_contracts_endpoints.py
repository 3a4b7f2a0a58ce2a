"""The ready address of a Service from its EndpointSlices (the gateway and the operator's erasure)."""

from __future__ import annotations

import pytest

from personalai_contracts.endpoints import ready_address

pytestmark = pytest.mark.unit


def piece(addresses, ready=True, port=8080, port_name="http"):
    return {"ports": [{"name": port_name, "port": port}],
            "endpoints": [{"addresses": addresses, "conditions": {"ready": ready}}]}


def test_the_first_ready_endpoint_on_the_named_port():
    assert ready_address([piece(["10.0.0.1"], ready=False), piece(["10.0.0.2"])]) == "10.0.0.2:8080"
    assert ready_address([piece(["fd00::2"])]) == "[fd00::2]:8080"
    assert ready_address([piece(["10.0.0.3"], port_name=None)]) == "10.0.0.3:8080"  # an unnamed port


def test_no_ready_endpoint_or_port_is_none():
    assert ready_address([]) is None
    assert ready_address([piece(["10.0.0.1"], ready=False)]) is None
    assert ready_address([piece(["10.0.0.1"], port_name="metrics")]) is None
    assert ready_address([{"ports": [{"name": "http", "port": 8080}], "endpoints": [{"addresses": []}]}]) is None
