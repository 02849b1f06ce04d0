"""The public surface, the logging contract, and the shipped examples."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest
import structlog

import swarm
from swarm.logging import configure_logging
from swarm.testing import MemorySwarm, ScriptedBackend

ROOT = Path(__file__).resolve().parent.parent


def test_public_names_stay_what_we_mean():
    assert set(swarm.__all__) == {
        "SCENARIOS", "AgentSpec", "AgentStatus", "Answer", "DeadlineExceeded", "NoCapableAgent", "PeerUnreachable",
        "ProtocolError", "QueryError", "QueryTooLarge", "Swarm", "SwarmError", "Topology", "TopologyError",
        "attach", "launch", "load_agent_spec", "load_topology",
    }
    assert all(hasattr(swarm, name) for name in swarm.__all__)


def test_every_log_line_about_a_query_carries_query_id_agent_and_hop(capsys):
    configure_logging("json", "debug")
    try:
        async def scenario():
            s = MemorySwarm()
            s.node("m1", 0.1, ScriptedBackend({}))
            s.node("m2", 0.9, ScriptedBackend({"q": "yes"}))
            await s.start_all(background=False)
            return await s.ask("q")

        answer = asyncio.run(scenario())
    finally:
        configure_logging("console", "warning")
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line.startswith("{")]
    about_query = [line for line in lines if line["event"] in ("rejected", "answered")]
    assert {(line["agent"], line["event"], line["hop"]) for line in about_query} == {("m1", "rejected", 0), ("m2", "answered", 1)}
    assert all(line["query_id"] == answer.query_id and line["level"] == "debug" for line in about_query)
    assert structlog.contextvars.get_contextvars() == {}  # nothing leaks past the handler


def test_live_membership_example_loses_nothing():
    # Runs as users run it: its own process, its own local Ray cluster.
    run = subprocess.run([sys.executable, str(ROOT / "examples" / "live_membership.py")], capture_output=True, text=True, timeout=300,
                         env={**__import__("os").environ, "SWARM_LOG_LEVEL": "error"})
    assert run.returncode == 0, run.stderr[-2000:]
    assert "2000 queries sent, 2000 outcomes: {'Answer': 2000}" in run.stdout


def test_logs_follow_a_replaced_stderr(monkeypatch):
    # Configuring while stderr is a stream that is later closed (a test's capture, a redirected
    # CLI call) must not break every later log line.
    import io

    from swarm import logging as swarm_logging

    before = swarm_logging.logging_settings()
    temporary = io.StringIO()
    monkeypatch.setattr(sys, "stderr", temporary)
    try:
        swarm_logging._configured = None
        configure_logging("json", "info")
        temporary.close()
        monkeypatch.setattr(sys, "stderr", io.StringIO())
        structlog.get_logger("t").info("after the stream closed", agent="a1")
        assert '"event": "after the stream closed"' in sys.stderr.getvalue()
    finally:
        swarm_logging._configured = None
        configure_logging(*before)


def test_the_distribution_has_a_name_of_its_own():
    """`swarm` on the public package index is an unrelated game: the project installs as
    swarm-selfroute (import name `swarm`), and nothing named `swarm` may be installed beside it."""
    from importlib import metadata

    dist = metadata.distribution("swarm-selfroute")
    assert dist.entry_points.select(group="console_scripts", name="swarm")
    assert all("swarm-selfroute[" in r or "swarm[" not in r for r in dist.requires or [])  # extras name the project itself
    with pytest.raises(metadata.PackageNotFoundError):
        metadata.distribution("swarm")
