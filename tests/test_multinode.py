"""A two-node Ray cluster on one machine (`ray start --head` + `ray start --address`), a swarm placed
across it by custom resources, launched and attached by address; it keeps serving when the node
holding one agent is stopped.

Both nodes run in the foreground (`--block`) as children of this test, so stopping them touches
nothing else on the machine (`ray stop` would stop every Ray cluster here, other people's too).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.ray]
ROOT = Path(__file__).resolve().parent.parent
RAY = str(Path(sys.executable).parent / "ray")
# Token authentication, as a user would set it up for a cluster: one shared secret that every node,
# every driver and every `ray` CLI call presents. A fresh one here, so the test needs no ~/.ray/auth_token.
# RAY_TMPDIR: the nodes' own temp folder (short: it holds unix sockets), removed afterwards, so the
# `ray_current_cluster` file that `ray start --head` writes never names this stopped cluster to later drivers.
TMP = tempfile.mkdtemp(prefix="rt", dir="/tmp")
ENV = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32), "RAY_DEDUP_LOGS": "0", "RAY_TMPDIR": TMP}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ray_node(*args: str) -> subprocess.Popen:
    cmd = [RAY, "start", "--block", "--disable-usage-stats", "--num-cpus=1", *args]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True, env=ENV)


def driver(command: str, address: str) -> dict:
    run = subprocess.run([sys.executable, str(ROOT / "tests" / "multinode_driver.py"), command, address], capture_output=True,
                         text=True, timeout=180, check=False, env={**ENV, "SWARM_LOG_LEVEL": "error"})
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(run.stdout.strip().splitlines()[-1])


def wait_for_nodes(address: str, count: int, timeout_s: float = 120) -> None:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        status = subprocess.run([RAY, "status", "--address", address], capture_output=True, text=True, timeout=60, check=False, env=ENV)
        if status.returncode == 0 and status.stdout.count("node_") >= count:
            return
        time.sleep(1)
    raise AssertionError(f"the cluster at {address} did not reach {count} nodes:\n{status.stdout}\n{status.stderr}")


def stop(node: subprocess.Popen) -> None:
    """SIGTERM to `ray start --block` stops that node's processes; the process group catches stragglers."""
    if node.poll() is None:
        node.send_signal(signal.SIGTERM)
        try:
            node.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(node.pid, signal.SIGKILL)
            node.wait(10)
    try:
        os.killpg(node.pid, signal.SIGKILL)  # anything of that node still alive in its session
    except ProcessLookupError:
        pass


def test_swarm_across_two_nodes_survives_losing_one():
    port = free_port()
    address = f"127.0.0.1:{port}"
    head = ray_node("--head", f"--port={port}", "--include-dashboard=false", '--resources={"node_a": 1}')
    worker = None
    try:
        wait_for_nodes(address, 1)
        worker = ray_node(f"--address={address}", '--resources={"node_b": 1}')
        wait_for_nodes(address, 2)

        first = driver("launch", address)
        assert first["placement"] == {"small": ["node_a"], "medium": ["node_b"], "large": ["node_a"]}
        assert first["answered"] == first["asked"] and "medium" in first["agents"]

        stop(worker)  # the node holding `medium` goes away
        after = driver("ask", address)  # a new driver, attached by name
        assert after["answered"] == after["asked"], after["errors"]
        assert "medium" not in after["agents"] and after["entries"] == ["small", "large"]
        assert after["status"]["small"] == after["status"]["large"] == "alive"
        assert after["status"].get("medium", "dead") in ("dead", "unreachable")
        assert driver("down", address) == {"down": True}
    finally:
        for node in (worker, head):
            if node is not None:
                stop(node)
        shutil.rmtree(TMP, ignore_errors=True)
