"""The dashboard on the replay swarm on a real local Ray: its HTTP API under the gateway's rules,
and the page in a real headless Chromium (Debian's chromium and chromium-driver, driven by
selenium with the system driver; nothing is downloaded). One swarm and one browser per module.
Locally a missing browser skips with the reason; under CI=true it fails."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

import swarm
from swarm.backends.replay import ReplayTable
from swarm.gateway import GatewaySettings, serve
from swarm.topology import load_topology
from conftest import missing_modules, require

pytestmark = pytest.mark.ray
ROOT = Path(__file__).resolve().parent.parent
KEY = "dash-key-" + "c" * 24
QUESTIONS = ReplayTable.load(ROOT / "topologies" / "data" / "arith-replay.jsonl").queries()
NEWCOMER = "name: m4b\ncost: 0.8\nbackend: {kind: replay, table: topologies/data/arith-replay.jsonl, model: m4}\n"
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


@pytest.fixture(scope="module")
def dash(ray_cluster):
    """The shipped cascade-replay swarm (as `dash`), a dashboard with a key and one without; all stopped at the end."""
    topo = load_topology(ROOT / "topologies" / "cascade-replay.yaml")
    s = swarm.launch(topo, name="dash")
    gateways = []
    try:
        gateways.append(serve("dash", GatewaySettings(port=0, api_keys=(KEY,), agent_base_dir=str(ROOT))))
        gateways.append(serve("dash", GatewaySettings(port=0)))
        yield s, topo, *gateways
    finally:
        for g in gateways:
            g.stop()
        s.shutdown()


@pytest.fixture(scope="module")
def browser():
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not os.access(p, os.X_OK)]
    require(f"the browser tests need Debian's chromium and chromium-driver ({', '.join(missing)} missing): "
            "apt-get install chromium chromium-driver" if missing else None)
    require(missing_modules("selenium", install="the browser tests need selenium: pip install -c constraints.txt -e '.[test]'"))
    os.environ["SE_OFFLINE"] = "true"  # selenium-manager must never fetch a driver or a browser
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync", "--window-size=1280,900"):
        options.add_argument(flag)
    profile = Path(os.environ.get("TMPDIR", "/tmp")) / f"swarm-dashboard-chromium-{os.getpid()}"
    options.add_argument(f"--user-data-dir={profile}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def call(g, method: str, path: str, key: str | None = KEY, **kwargs) -> httpx.Response:
    headers = kwargs.pop("headers", {})
    if key:
        headers["Authorization"] = f"Bearer {key}"
    r = httpx.request(method, g.url + path, headers=headers, timeout=60, **kwargs)
    assert "Traceback" not in r.text
    return r


def error_code(r: httpx.Response, status: int) -> str:
    assert r.status_code == status, r.text
    return r.json()["error"]["code"]


def states(g, key: str | None = KEY) -> dict[str, str]:
    return {a["name"]: a["state"] for a in call(g, "GET", "/dashboard/api/state", key).json()["agents"]}


# ---------------------------------------------------------------- the HTTP API


def test_the_api_keeps_the_gateways_rules(dash):
    s, _, keyed, keyless = dash
    assert error_code(call(keyed, "GET", "/dashboard/api/state", key=None), 401) == "invalid_api_key"
    view = call(keyed, "GET", "/dashboard/api/state").json()
    assert [(a["name"], a["state"], a["backend"]) for a in view["agents"]] == [(f"m{i}", "alive", "replay") for i in range(1, 6)]
    assert all("in_flight" in a and "p95_ms" in a for a in view["agents"])

    # Actions: refused without a key, or with a wrong one, and the agent lives on; JSON only; bad input named.
    assert error_code(call(keyed, "POST", "/dashboard/api/agents/m5/kill", key=None, json={}), 401) == "invalid_api_key"
    assert error_code(call(keyed, "POST", "/dashboard/api/agents/m5/kill", key="x" * 32, json={}), 401) == "invalid_api_key"
    assert error_code(call(keyed, "POST", "/dashboard/api/agents/m5/kill", content=b"{}", headers={"Content-Type": "text/plain"}), 415)
    assert error_code(call(keyed, "POST", "/dashboard/api/agents/nobody/kill", json={}), 404) == "no_such_agent"
    bad = call(keyed, "POST", "/dashboard/api/agents", json={"yaml": "name: x\ncost: cheap\nbackend: {kind: replay, table: t.jsonl}\n"})
    assert error_code(bad, 400) == "invalid_agent" and "cost" in bad.json()["error"]["message"]
    missing = call(keyed, "POST", "/dashboard/api/agents", json={"yaml": NEWCOMER.replace("arith-replay", "no-such-table")})
    assert error_code(missing, 400) == "invalid_agent" and "no-such-table" in missing.json()["error"]["message"]
    assert error_code(call(keyed, "POST", "/dashboard/api/agents", json=["not", "an", "object"]), 400) == "invalid_request"
    taken = call(keyed, "POST", "/dashboard/api/agents", json={"yaml": NEWCOMER.replace("m4b", "m1")})
    assert error_code(taken, 409) == "add_failed" and "already has a live agent named 'm1'" in taken.json()["error"]["message"]
    assert error_code(call(keyed, "POST", "/dashboard/api/agents", content=b"x" * (2 << 20),
                           headers={"Content-Type": "application/json"}), 413) == "request_too_large"
    assert states(keyed)["m5"] == "alive" and "m5" in s.entries()

    # Without keys: loopback Host only, and read-only.
    assert states(keyless, key=None)["m5"] == "alive"
    assert error_code(call(keyless, "POST", "/dashboard/api/agents/m5/kill", key=None, json={}), 403) == "read_only"
    for path in ("/dashboard", "/dashboard/api/state", "/dashboard/dashboard.js"):
        assert error_code(call(keyless, "GET", path, key=None, headers={"Host": "evil.example"}), 421) == "misdirected_request"

    page = call(keyed, "GET", "/dashboard", key=None)  # the page itself holds no data: it asks for the key
    assert page.status_code == 200 and 'data-keyed="true"' in page.text
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"] and "script-src 'self'" in page.headers["content-security-policy"]
    assert call(keyed, "GET", "/dashboard/dashboard.js", key=None).headers["content-type"].startswith("text/javascript")
    assert error_code(call(keyed, "GET", "/dashboard/secrets.txt", key=None), 404) == "not_found"


def test_swarm_dashboard_command(dash, ray_cluster):
    """As a user runs it: `swarm dashboard NAME` prints the page's URL and serves it until Ctrl-C;
    without keys it is read-only, and it refuses a non-loopback bind without keys."""
    address = ray_cluster.get_runtime_context().gcs_address
    refused = subprocess.run([sys.executable, "-m", "swarm.cli", "dashboard", "dash", "--host", "0.0.0.0", "--address", address],
                             capture_output=True, text=True, timeout=60)
    assert refused.returncode == 1 and refused.stderr.startswith("error: refusing to serve on '0.0.0.0' without API keys")
    proc = subprocess.Popen([sys.executable, "-m", "swarm.cli", "dashboard", "dash", "--port", "0", "--address", address],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "SWARM_LOG_LEVEL": "warning"})
    try:
        line = proc.stdout.readline()
        assert line.startswith("dashboard of swarm 'dash': open http://127.0.0.1:") and "read-only" in line, line or proc.stderr.read()
        url = line.split(" open ", 1)[1].split(" ", 1)[0]
        assert url.endswith("/dashboard") and 'data-keyed="false"' in httpx.get(url, timeout=30).text
        assert len(httpx.get(url + "/api/state", timeout=30).json()["agents"]) == 5
    finally:
        proc.send_signal(signal.SIGINT)
        _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0 and "Traceback" not in err, err[-2000:]


# ---------------------------------------------------------------- the page, in Chromium


def test_the_page_shows_the_swarm_live(browser, dash, ray_cluster, tmp_path_factory):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    s, topo, keyed, _ = dash
    shots = Path(os.environ.get("SWARM_SCREENSHOTS") or tmp_path_factory.mktemp("dashboard-screenshots"))

    def wait(what, seconds: float = 15):
        return WebDriverWait(browser, seconds, poll_frequency=0.2).until(lambda d: what())

    def read(css: str, *attrs: str) -> list[list[str]]:
        """Attributes (or 'text') of what matches `css`, read in one go: the page redraws every second."""
        return browser.execute_script("return [...document.querySelectorAll(arguments[0])].map("
                                      "e => arguments[1].map(a => a === 'text' ? e.textContent : e.getAttribute(a)))", css, list(attrs))

    def nodes(state: str | None = None) -> dict[str, str]:
        found = dict(read("#graph g.node", "data-agent", "data-state"))
        return found if state is None else {n: st for n, st in found.items() if st == state}

    def edges() -> dict[str, int]:
        return {e: int(n) for e, n in read("#graph g.edge", "data-edge", "data-count")}

    def events(kind: str) -> list[str]:
        return [a for a, in read(f"#timeline [data-kind='{kind}']", "data-agent")]

    browser.get(keyed.url + "/dashboard")
    browser.find_element(By.ID, "key").send_keys(KEY)  # typed once; then sent as a header on every fetch
    browser.find_element(By.ID, "key-use").click()
    wait(lambda: len(nodes("alive")) == 5)
    assert list(nodes()) == ["m1", "m2", "m3", "m4", "m5"]  # cascade order
    assert [st for st, in read("#agents tbody tr", "data-state")] == ["alive"] * 5

    # Queries flow: the edges they took appear with their counts, and the last queries with every decision.
    answers = s.ask_many(QUESTIONS[:60], scenario="performance_first")
    took = {(a.path[i], a.path[i + 1]) for a in answers for i in range(len(a.path) - 1)}
    assert ("m1", "m2") in took
    wait(lambda: edges().get("m1->m2", 0) > 0)
    assert set(edges()) <= {f"{a}->{b}" for a, b in took}
    assert wait(lambda: [p for p, in read("#queries .path", "text") if p.startswith("m1: reject → m2")])
    browser.save_screenshot(str(shots / "1-queries.png"))

    # A crash: the page shows the agent dead within the failure-detection time, with a timeline entry.
    d = topo.defaults
    detection_s = d.ping_interval_s + 2 * d.ping_timeout_s + d.suspect_timeout_s + 3  # probe, indirect probes, suspicion, polls
    began = time.monotonic()
    assert call(keyed, "POST", "/dashboard/api/agents/m2/kill", json={}).json() == {"killed": "m2"}
    wait(lambda: nodes().get("m2") == "dead" and "m2" in events("death detected"), detection_s)
    print(f"m2's death shown after {time.monotonic() - began:.1f} s (detection bound {detection_s:.0f} s)")

    # An agent added from the page appears, and queries then take its edges.
    browser.find_element(By.ID, "add-yaml").send_keys(NEWCOMER)
    browser.find_element(By.ID, "add-button").click()
    wait(lambda: read("#action-result", "text") == [["add: done"]], 60)
    wait(lambda: nodes().get("m4b") == "alive" and "m4b" in events("joined"))
    assert list(nodes()) == ["m1", "m2", "m3", "m4", "m4b", "m5"]
    s.ask_many(QUESTIONS[:60], scenario="performance_first")
    wait(lambda: edges().get("m4->m4b", 0) > 0 and edges().get("m1->m3", 0) > 0)  # around the dead m2, through the newcomer
    browser.execute_script("window.scrollTo(0, 0)")
    browser.save_screenshot(str(shots / "2-crash-and-join.png"))

    # The live-membership example, attached to this swarm: its join, leave and crash appear as they happen.
    example = subprocess.Popen([sys.executable, str(ROOT / "examples" / "live_membership.py"), "--attach", "dash", "--pace", "1.5",
                                "--rate", "5", "--address", ray_cluster.get_runtime_context().gcs_address],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "SWARM_LOG_LEVEL": "error"})
    try:
        wait(lambda: "m2b" in events("joined"), 60)
        wait(lambda: "m3" in events("left"), 30)
        wait(lambda: "m4" in events("death detected"), 30)
        out, err = example.communicate(timeout=60)
    finally:
        example.kill()
    assert example.returncode == 0, err[-2000:]
    sent = re.search(r"(\d+) queries sent, (\d+) outcomes: \{'Answer': (\d+)\}", out)
    assert sent and sent[1] == sent[2] == sent[3], out
    timeline = [(k, a) for k, a in read("#timeline [data-kind]", "data-kind", "data-agent")][::-1]  # oldest first
    assert [e for e in timeline if e[1] in ("m2b", "m3", "m4")] == [("joined", "m2b"), ("left", "m3"), ("death detected", "m4")]
    assert nodes() | {"m2b": "alive", "m3": "left", "m4": "dead"} == nodes()
    browser.execute_script("window.scrollTo(0, 0)")
    browser.save_screenshot(str(shots / "3-live-example.png"))
    print(f"screenshots in {shots}")

    severe = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert severe == [], severe


# ---------------------------------------------------------------- the view, from agents' Status messages (no Ray)


def test_the_view_counts_edges_over_a_minute_and_puts_each_event_once_on_its_own_clock():
    from swarm.dashboard.view import SwarmView
    from swarm.protocol import Member, MemberChange, PeerCount, Status

    def status(name, members, forwards=(), changes=()):
        return Status(name=name, state="alive", cost=0.1, incarnation=0, in_flight=0, received=0, answered=0, rejected=0, forced=0,
                      failed=0, forwarded=0, members=members, forwards_to=[PeerCount(peer=p, count=n) for p, n in forwards],
                      changes=[MemberChange(name=n, state=st, previous=pr, incarnation=i, age_s=0) for n, st, pr, i in changes])

    a, b = Member(name="a", cost=0.1), Member(name="b", cost=0.5)
    view = SwarmView("v")
    view.observe({"a": status("a", [a, b], [("b", 100)], [("a", "alive", None, 0), ("b", "alive", None, 0)]), "b": None}, {}, 1000.0)
    assert view.snapshot()["edges"] == []  # 100 forwards before the dashboard's first poll are not the last minute's
    view.observe({"a": status("a", [a, b], [("b", 130)])}, {}, 1030.0)
    view.observe({"a": status("a", [a, b], [("b", 150)])}, {}, 1060.0)
    assert view.snapshot()["edges"] == [{"from": "a", "to": "b", "count": 50, "total": 150}]
    view.observe({"a": status("a", [a, b], [("b", 150)])}, {}, 1091.0)  # the window: since the last poll a minute ago or more
    assert view.snapshot()["edges"] == [{"from": "a", "to": "b", "count": 20, "total": 150}]

    # b is suspected by a and refutes within one poll; then c joins, and learns of a and b (old news to the dashboard).
    refuted = b.model_copy(update={"incarnation": 1})
    c = Member(name="c", cost=0.9)
    view.observe({"a": status("a", [a, refuted, c], [("b", 150)], [("b", "suspect", "alive", 0), ("b", "alive", "suspect", 1),
                                                                    ("c", "alive", None, 0)]),
                  "c": status("c", [a, refuted, c], changes=[("a", "alive", None, 0), ("b", "alive", None, 1)])}, {}, 1100.0)
    events = [(e["kind"], e["agent"]) for e in view.snapshot()["timeline"]][::-1]
    assert events == [("watching", ""), ("suspected", "b"), ("suspicion refuted", "b"), ("joined", "c")]
    assert [(r["name"], r["state"], r["since"]) for r in view.snapshot()["agents"]] == [("a", "alive", 0.0), ("b", "alive", 0.0), ("c", "alive", 1100.0)]
