import pytest

from devcluster.agent.nodeagent import build_node_conditions, build_registration
from devcluster.nodes import GPU_PRODUCT_LABEL, KWOK_ANNOTATION, RTX_5090

pytestmark = pytest.mark.unit


def test_registered_node_looks_like_an_rtx_5090_node_that_kwok_leaves_alone():
    node = build_registration("dev-rtx5090-0", gpus=1)
    assert node["metadata"]["labels"][GPU_PRODUCT_LABEL] == RTX_5090
    assert KWOK_ANNOTATION not in node["metadata"]["annotations"]
    assert node["status"]["capacity"]["nvidia.com/gpu"] == "1"
    assert {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"} in node["spec"]["taints"]
    assert {"type": "InternalIP", "address": "127.0.0.1"} in node["status"]["addresses"]
    assert "development" in node["status"]["nodeInfo"]["osImage"]


def test_heartbeat_conditions_say_ready_and_keep_their_transition_time():
    conditions = {c["type"]: c for c in build_node_conditions(since="T0", now="T9")}
    assert conditions["Ready"]["status"] == "True" and conditions["Ready"]["lastHeartbeatTime"] == "T9"
    assert conditions["Ready"]["lastTransitionTime"] == "T0"
    assert "development only" in conditions["Ready"]["message"]
    assert all(conditions[k]["status"] == "False" for k in ("MemoryPressure", "DiskPressure", "PIDPressure"))
