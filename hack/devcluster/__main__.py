"""The local control plane, from the command line.

    python -m devcluster build    build (or find cached) etcd, Kubernetes, kwok and helm binaries
    python -m devcluster up       start the control plane with simulated RTX 5090 nodes
    python -m devcluster status   say whether it is up, and where the kubeconfig is
    python -m devcluster down     stop it and remove its state
    python -m devcluster demo     the whole product loop (see `make demo`)
"""

from __future__ import annotations

import argparse
import sys

from . import binaries
from .controlplane import ControlPlane


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devcluster", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("build", help="build the pinned binaries into the cache")
    up = sub.add_parser("up", help="start the control plane")
    up.add_argument("--gpu-nodes", type=int, default=2, help="simulated RTX 5090 nodes (default 2)")
    up.add_argument("--cpu-nodes", type=int, default=1, help="simulated CPU nodes (default 1)")
    sub.add_parser("down", help="stop the control plane and remove its state")
    sub.add_parser("status", help="is it up?")
    sub.add_parser("demo", help="the whole loop: train, promote, serve, chat")
    args = parser.parse_args(argv)

    try:
        if args.command == "build":
            print(binaries.build())
        elif args.command == "up":
            plane = ControlPlane().up(gpu_nodes=args.gpu_nodes, cpu_nodes=args.cpu_nodes)
            print(plane.kubeconfig)
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
