"""python -m swarm.testbed [--quick] [--seed N] [--out DIR]: the same as `swarm testbed build`."""

from __future__ import annotations

import sys

from swarm.cli import main

if __name__ == "__main__":
    sys.exit(main(["testbed", "build", *sys.argv[1:]]))
