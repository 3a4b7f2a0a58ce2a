"""The local control plane, from the command line.

    python -m devcluster build    build (or find cached) etcd, Kubernetes, kwok and helm binaries
    python -m devcluster up       start the control plane with simulated RTX 5090 nodes
                                  (--agent-nodes N: also N nodes run by the development node agent)
    python -m devcluster agent    run the development node agent in the foreground (pods as local processes)
    python -m devcluster status   say whether it is up, and where the kubeconfig is
    python -m devcluster down     stop it and remove its state
    python -m devcluster demo     the whole product loop (see `make demo`)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import binaries
from .controlplane import ControlPlane


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devcluster", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("build", help="build the pinned binaries into the cache")
    up = sub.add_parser("up", help="start the control plane")
    up.add_argument("--gpu-nodes", type=int, default=2, help="simulated RTX 5090 nodes (default 2)")
    up.add_argument("--cpu-nodes", type=int, default=1, help="simulated CPU nodes (default 1)")
    up.add_argument("--agent-nodes", type=int, default=0,
                    help="RTX 5090 nodes dev-rtx5090-<i> whose pods run as local processes (default 0)")
    agent = sub.add_parser("agent", help="run the development node agent (pods as local processes; development only)")
    agent.add_argument("--node", default="dev-rtx5090-0", help="node name (default dev-rtx5090-0)")
    agent.add_argument("--gpus", type=int, default=1, help="GPUs the node advertises (default 1)")
    agent.add_argument("--state-dir", type=Path, help="default: <cluster state>/agent/<node>")
    agent.add_argument("--kubeconfig", type=Path, help="default: <cluster state>/node-agent.kubeconfig")
    sub.add_parser("down", help="stop the control plane and remove its state")
    sub.add_parser("status", help="is it up?")
    sub.add_parser("demo", help="the whole loop: train, promote, serve, chat")
    args = parser.parse_args(argv)

    try:
        if args.command == "build":
            print(binaries.build())
        elif args.command == "up":
            plane = ControlPlane().up(gpu_nodes=args.gpu_nodes, cpu_nodes=args.cpu_nodes)
            for index in range(args.agent_nodes):
                plane.start_node_agent(f"dev-rtx5090-{index}")
            print(plane.kubeconfig)
        elif args.command == "agent":
            from .agent.nodeagent import run_agent

            plane = ControlPlane()
            return run_agent(args.node, args.state_dir or plane.agent_state_dir(args.node),
                             args.kubeconfig or plane.state_dir / "node-agent.kubeconfig", gpus=args.gpus)
        elif args.command == "down":
            ControlPlane().down()
        elif args.command == "status":
            plane = ControlPlane()
            if not plane.healthy():
                print("down")
                return 1
            print(f"up {plane.server} kubeconfig={plane.kubeconfig}")
        elif args.command == "demo":
            from .demo import run_demo

            return run_demo()
    except (RuntimeError, TimeoutError) as error:
        print(f"devcluster: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
