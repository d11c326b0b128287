"""`/metrics` on two real replicas under real traffic, and the Grafana dashboard's queries run
by a real Prometheus that scrapes them.

The page is parsed with the Prometheus project's own OpenMetrics parser (a malformed page
fails), and the values are checked against what the test did: sessions by realm and role, an
edge node online on the replica that holds it, calls by outcome, the cross-replica and
`remote.*` latency histograms, a rejected HELLO, Raft proposals and replication lag.

Then `/usr/bin/prometheus` (Debian package, installed by .ci/run) scrapes both replicas every
second while traffic goes on, and every query of every panel of
`helm/fabric-master/dashboards/fabric-master.json` must return data. Set
FABRIC_SKIP_PROMETHEUS=1 to leave that part out on a machine without Prometheus.
"""

import asyncio
import json
import os
import re
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
from pathlib import Path

import pytest
from autobahn.wamp.exception import ApplicationError
from prometheus_client.openmetrics.parser import text_string_to_metric_families

from conftest import Master, aio, free_port, start_two_replicas, stop_all, http_get, join, join_expect_abort, w
from mgmt import call_error, join_node, join_when_realm_exists, node_key, unique
from simnode import serve_node_api
from waiting import wait_for, wait_until

# How the superuser realm refuses a key it does not know (on a, and counted there).
REJECTED = "fabric.auth-failed.invalid-parameters"
DASHBOARD = Path(__file__).resolve().parents[2] / "helm" / "fabric-master" / "dashboards" / "fabric-master.json"


@pytest.fixture(scope="module")
def replicas(tmp_path_factory, keys):
    a, b = start_two_replicas(tmp_path_factory.mktemp("metrics"), keys)
    yield a, b
    stop_all(a, b)


def scrape(master: Master) -> dict:
    """The page, parsed strictly: {(sample name, frozenset(labels)): value}."""
    status, body = http_get(master.http + "/metrics")
    assert status == 200, status
    samples = {}
    for family in text_string_to_metric_families(body.decode()):
        for s in family.samples:
            samples[(s.name, frozenset(s.labels.items()))] = s.value
    return samples


def value(samples: dict, name: str, **labels) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def total(samples: dict, name: str, **labels) -> float:
    """The sum over every series of `name` whose labels include `labels`."""
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= set(ls))


async def traffic(a, b, keys, tmp_path):
    """Management, node and failing calls across both replicas; returns what the checks need."""
    su = await join(a, keys)
    name = unique("met-")
    await w(su.call("crossbarfabriccenter.mrealm.create_mrealm", {"name": name}), 10)
    kp = node_key(tmp_path, unique("edge"))
    node = await w(su.call("crossbarfabriccenter.mrealm.pair_node", kp.pubkey_hex, name, "node1"), 10)
    owner = await join_when_realm_exists(b, keys, name)
    n = await join_node(a, kp)
    await serve_node_api(n, "node1")
    # The node is on a, its owner on b: remote.* from b crosses to a.
    st = await wait_until(
        lambda: owner.call("crossbarfabriccenter.remote.node.get_status", node["oid"]),
        10, interval=0.05, what="remote.node.get_status from b to the node on a",
        retry_on=(ApplicationError,), retry_if=lambda e: e.error == "wamp.error.no_such_procedure",
    )
    assert st["management_node_id"] == "node1", st
    e = await call_error(owner, "crossbarfabriccenter.remote.node.get_worker", node["oid"], "nope")
    assert e.error == "crossbar.error.no_such_worker", e
    details = await join_expect_abort(a, keys, key=keys.intruder)
    assert details.reason == REJECTED, details
    return su, owner, n, name, node


@aio(timeout=90)
async def test_metrics_tell_what_happened(replicas, keys, tmp_path):
    a, b = replicas
    before_a, before_b = scrape(a), scrape(b)
    su, owner, n, name, node = await traffic(a, b, keys, tmp_path)
    ma, mb = scrape(a), scrape(b)

    # Sessions by realm and role, where they are.
    assert value(ma, "fabric_realm_sessions", realm=name, role="node") == 1, ma
    assert value(mb, "fabric_realm_sessions", realm=name, role="owner") == 1, mb
    assert value(mb, "fabric_realm_sessions", realm=name, role="node") is None
    assert value(ma, "fabric_edge_nodes_online") >= 1
    assert value(mb, "fabric_edge_nodes_online") == 0
    assert value(ma, "fabric_sessions") == total(ma, "fabric_realm_sessions")

    # Calls by realm and outcome, on the replica the caller used.
    assert value(mb, "fabric_calls_total", realm=name, outcome="crossbar.error.no_such_worker") >= 1
    assert value(mb, "fabric_calls_total", realm=name, outcome="ok") >= 1
    # remote.* from b to a node on a: timed on b as remote and as cross_replica.
    for path in ("remote", "cross_replica"):
        got = total(mb, "fabric_call_duration_seconds_count", path=path) \
            - total(before_b, "fabric_call_duration_seconds_count", path=path)
        assert got >= 2, (path, got)
    assert total(ma, "fabric_call_duration_seconds_count", path="local") >= 1

    # The intruder's HELLO, refused on a.
    rejected = value(ma, "fabric_auth_rejected_total", reason=REJECTED) or 0
    assert rejected - (value(before_a, "fabric_auth_rejected_total", reason=REJECTED) or 0) == 1

    # Raft: the writes were proposed, the leader reports how far behind its follower is.
    proposals = total(ma, "fabric_raft_proposals_total", outcome="ok") + total(mb, "fabric_raft_proposals_total", outcome="ok")
    assert proposals - total(before_a, "fabric_raft_proposals_total", outcome="ok") \
        - total(before_b, "fabric_raft_proposals_total", outcome="ok") >= 2
    leader, follower = (ma, mb) if value(ma, "fabric_raft_is_leader") == 1 else (mb, ma)
    assert value(follower, "fabric_raft_is_leader") == 0
    assert value(leader, "fabric_raft_replication_lag", peer="2" if leader is ma else "1") is not None
    assert value(leader, "fabric_raft_voters") == 2
    assert value(ma, "fabric_raft_has_quorum") == value(mb, "fabric_raft_has_quorum") == 1
    assert value(ma, "fabric_store_file_bytes") > 0
    # Events: the owner on b was told of the node (on_node_ready and friends) or not; either
    # way the counter exists per realm and never runs backwards.
    assert value(mb, "fabric_events_delivered_total", realm=name) is not None

    # A callee's own error URIs do not become label values.
    callee = await join(a, keys, label="err-callee")

    def fail(*args):
        raise ApplicationError("com.example.custom.error." + str(time.time_ns()))

    uri = f"com.example.metrics.fail.{callee.id}"
    await w(callee.register(fail, uri))
    for _ in range(3):
        with pytest.raises(ApplicationError):
            await w(su.call(uri))
    mc = scrape(a)
    outcomes = {dict(ls)["outcome"] for (n_, ls) in mc if n_ == "fabric_calls_total"}
    assert not any(o.startswith("com.example") for o in outcomes), outcomes
    assert value(mc, "fabric_calls_total", realm="com.crossbario.fabric", outcome="application_error") >= 3
    for s in (su, owner, n, callee):
        s.leave()


def dashboard_queries() -> list[tuple[str, str]]:
    """(panel title, PromQL) of every target, with the dashboard's variables filled in."""
    dash = json.loads(DASHBOARD.read_text())
    out = []
    for p in dash["panels"]:
        for t in p.get("targets", []):
            expr = t["expr"].replace("$__rate_interval", "30s").replace("$instance", ".*")
            assert "$" not in expr, f"unfilled variable in {expr}"
            out.append((p["title"], expr))
    return out


@aio(timeout=30)
async def test_the_dashboard_names_only_metrics_the_replicas_expose(replicas, keys):
    a, b = replicas
    # A session, so that the per-realm series exist; the leader's replication lag is on
    # whichever replica leads.
    su = await join(a, keys)
    exposed = {n for m in (a, b) for (n, _) in scrape(m)}
    su.leave()
    queries = dashboard_queries()
    assert len(queries) >= 20
    for title, expr in queries:
        for metric in re.findall(r"\bfabric_[a-z_]+", expr):
            assert metric in exposed, f"panel {title!r}: {metric} is not on /metrics"


def _prometheus_query(port: int, expr: str) -> dict:
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    status, body = http_get(url, timeout=5)
    assert status == 200, (status, body[:300])
    return json.loads(body)


@pytest.fixture
def prometheus(replicas, tmp_path):
    if os.environ.get("FABRIC_SKIP_PROMETHEUS") == "1":
        pytest.skip("FABRIC_SKIP_PROMETHEUS=1")
    binary = shutil.which("prometheus")
    assert binary, "prometheus is not installed (apt-get install --no-install-recommends prometheus)"
    a, b = replicas
    port = free_port()
    targets = [m.http.removeprefix("http://") for m in (a, b)]
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        "scrape_configs:\n  - job_name: fabric-master\n    static_configs:\n"
        f"      - targets: {json.dumps(targets)}\n"
    )
    log = open(tmp_path / "prometheus.log", "w")
    proc = subprocess.Popen(
        [binary, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{port}"],
        stdout=log, stderr=subprocess.STDOUT,
    )
    try:
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        log.close()


@aio(timeout=120)
async def test_every_dashboard_query_returns_data_from_a_real_scrape(replicas, keys, tmp_path, prometheus):
    a, b = replicas
    port = prometheus

    def both_up():
        url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode(
            {"query": 'up{job="fabric-master"} == 1'})
        status, body = http_get(url, timeout=5)
        # 503 while Prometheus opens its storage (it listens before it is ready).
        return status == 200 and len(json.loads(body)["data"]["result"]) == 2

    await asyncio.to_thread(
        wait_for, both_up, 30, what="Prometheus scraping both replicas",
        retry_on=(urllib.error.URLError,),  # until Prometheus listens
    )
    # Traffic while Prometheus scrapes, so that rates and quantiles have samples to work on.
    su, owner, n, name, node = await traffic(a, b, keys, tmp_path)
    deadline = time.monotonic() + 8
    calls = 0
    while time.monotonic() < deadline:
        await w(owner.call("crossbarfabriccenter.remote.node.get_status", node["oid"]), 10)
        await call_error(owner, "crossbarfabriccenter.remote.node.get_worker", node["oid"], "nope")
        await w(su.call("crossbarfabriccenter.mrealm.list_mrealms"), 10)
        calls += 3
        await asyncio.sleep(0.1)
    assert calls > 0

    queries = dashboard_queries()

    last = {}

    def answered():
        empty = []
        for title, expr in queries:
            r = _prometheus_query(port, expr)
            assert r["status"] == "success", (title, expr, r)
            if not r["data"]["result"]:
                empty.append(f"{title}: {expr}")
        last["empty"] = empty
        return not empty

    await asyncio.to_thread(
        wait_for, answered, 30,
        what=lambda: "dashboard queries with no data:\n" + "\n".join(last.get("empty", [])),
    )
    # The panels show what happened: remote calls were timed, nodes are online.
    r = _prometheus_query(port, 'sum(fabric_edge_nodes_online)')
    assert float(r["data"]["result"][0]["value"][1]) >= 1
    r = _prometheus_query(port, 'sum(rate(fabric_call_duration_seconds_count{path="remote"}[30s]))')
    assert float(r["data"]["result"][0]["value"][1]) > 0
    for s in (su, owner, n):
        s.leave()
