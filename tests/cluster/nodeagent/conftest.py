"""The development node agent for the cluster tests: started as a subprocess (reused when
`python -m devcluster up --agent-nodes 1` already runs one), stopped afterwards, and its node
deleted. Module scope, not session: while the agent's node exists, any GPU pod of another test may
be scheduled onto it and run as a real process instead of kwok's simulation."""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest

from devcluster.waiting import wait_for

AGENT_NODE = "dev-rtx5090-0"


@pytest.fixture(scope="module")
def node_agent(cluster):
    if cluster.node_agent_running(AGENT_NODE):
        yield AGENT_NODE
        return
    log_path = cluster.log_file(f"node-agent-{AGENT_NODE}-tests")
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as out:
        process = subprocess.Popen([sys.executable, "-m", "devcluster", "agent", "--node", AGENT_NODE],
                                   stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   env=cluster.env, start_new_session=True)

    def agent_ready():
        if process.poll() is not None:
            raise AssertionError(f"the node agent exited with {process.returncode}; see {log_path}")
        return cluster.node_ready(AGENT_NODE)

    wait_for(agent_ready, timeout=60, interval=0.5, message=f"node {AGENT_NODE} Ready (agent log {log_path})")
    yield AGENT_NODE
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)
    cluster.kubectl("delete", "node", AGENT_NODE, "--ignore-not-found", "--wait=false", check=False)
