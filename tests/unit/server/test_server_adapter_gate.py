"""The local engine's adapter gate: the first request switches the model, whichever adapter it asks for."""

import asyncio

import pytest

from personalai_server.engines.local import AdapterGate

pytestmark = pytest.mark.unit


def test_the_first_request_for_the_base_model_switches_even_though_its_key_is_none():
    # Found by the demo: the model starts with its adapter active, and None (the base model) was also
    # the gate's initial key, so the first base-model request ran with the adapter.
    switched = []

    async def scenario():
        gate = AdapterGate()
        await gate.enter(None, switched.append)
        gate.leave()
        await gate.enter("v1", switched.append)
        gate.leave()
        await gate.enter("v1", switched.append)
        gate.leave()

    asyncio.run(scenario())
    assert switched == [None, "v1"]
