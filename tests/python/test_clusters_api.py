"""Router clusters with member nodes and worker groups (spec §6.5) and web clusters with
member nodes and web services (§6.6) on a management realm, against the real binary."""

import uuid

from conftest import aio, w
from mgmt import AREALM, RCLUSTER, WCLUSTER, expect_error, is_oid, new_mrealm, status_becomes, unique

RC = RCLUSTER
WC = WCLUSTER
NO_SUCH = "crossbar.error.no_such_object"
EXISTS = "crossbar.error.already_exists"
BAD_ARG = "wamp.error.invalid_argument"
BAD_CONFIG = "wamp.error.invalid_configuration"

# The exact key sets the reference answers (samples/live/calls1.txt).
ROUTERCLUSTER_FIELDS = {"changed", "description", "label", "name", "oid", "owner_oid", "status", "tags"}
WEBCLUSTER_FIELDS = ROUTERCLUSTER_FIELDS | {
    "http_access_log", "http_client_timeout", "http_display_tracebacks", "http_hsts",
    "http_hsts_max_age", "tcp_backlog", "tcp_interface", "tcp_port", "tcp_shared",
    "tcp_version", "tls_ca_certificates", "tls_certificate", "tls_chain_certificates",
    "tls_ciphers", "tls_dhparam", "tls_key",
}


@aio
async def test_routercluster_lifecycle(master, keys):
    m = await new_mrealm(master, keys)
    await m.watch(
        RC, "on_routercluster_created", "on_routercluster_deleted", "on_routercluster_starting",
        "on_routercluster_stopping", "on_routercluster_stopped",
    )
    c = await w(m.s.call(RC + "create_routercluster", {"name": "cluster1", "label": "C"}))
    assert set(c) == ROUTERCLUSTER_FIELDS, c
    assert c["name"] == "cluster1" and c["status"] == "STOPPED" and c["label"] == "C", c
    assert c["owner_oid"] == m.mrealm["owner"] and is_oid(c["oid"]), c
    assert (await m.event("on_routercluster_created")) == c
    await expect_error(m.s, EXISTS, RC + "create_routercluster", {"name": "cluster1"})
    for bad in ["Cluster1", "c1", "1cluster", "cluster-one", "x" * 65]:
        await expect_error(m.s, BAD_CONFIG, RC + "create_routercluster", {"name": bad})
    await expect_error(m.s, BAD_CONFIG, RC + "create_routercluster", {})
    await expect_error(m.s, BAD_ARG, RC + "create_routercluster", "cluster1")

    c2 = await w(m.s.call(RC + "create_routercluster", {"name": "alpha"}))
    assert set(await w(m.s.call(RC + "list_routerclusters"))) == {c["oid"], c2["oid"]}
    assert await w(m.s.call(RC + "list_routerclusters", True)) == ["alpha", "cluster1"]
    assert await w(m.s.call(RC + "get_routercluster", c["oid"])) == c
    assert await w(m.s.call(RC + "get_routercluster_by_name", "cluster1")) == c
    await expect_error(m.s, NO_SUCH, RC + "get_routercluster", str(uuid.uuid4()))
    await expect_error(m.s, NO_SUCH, RC + "get_routercluster_by_name", "nope")
    await expect_error(m.s, BAD_ARG, RC + "get_routercluster", "x")

    started = await w(m.s.call(RC + "start_routercluster", c["oid"]))
    assert started["oid"] == c["oid"] and started["status"] == "STARTING", started
    assert started["who"]["authrole"] == "owner", started
    assert (await m.event("on_routercluster_starting"))["status"] == "STARTING"
    await expect_error(m.s, "crossbar.error.cannot_start", RC + "start_routercluster", c["oid"])
    await expect_error(m.s, "crossbar.error.not_stopped", RC + "delete_routercluster", c["oid"])

    stopped = await w(m.s.call(RC + "stop_routercluster", c["oid"]))
    assert stopped["status"] == "STOPPING", stopped
    assert (await m.event("on_routercluster_stopping"))["status"] == "STOPPING"
    assert (await m.event("on_routercluster_stopped", timeout=15))["status"] == "STOPPED"
    await expect_error(m.s, "crossbar.error.cannot_stop", RC + "stop_routercluster", c["oid"])
    await expect_error(m.s, NO_SUCH, RC + "start_routercluster", str(uuid.uuid4()))

    stat = await w(m.s.call(RC + "stat_routercluster", c["oid"]))
    assert stat["oid"] == c["oid"], stat
    assert stat["stats"] == {"nodes": 0, "nodes_online": 0, "workergroups": 0, "workers": 0}, stat

    deleted = await w(m.s.call(RC + "delete_routercluster", c["oid"]))
    assert deleted["oid"] == c["oid"], deleted
    assert (await m.event("on_routercluster_deleted"))["oid"] == c["oid"]
    await expect_error(m.s, NO_SUCH, RC + "get_routercluster", c["oid"])
    await expect_error(m.s, NO_SUCH, RC + "delete_routercluster", c["oid"])


@aio
async def test_routercluster_nodes_and_workergroups(master, keys, tmp_path):
    m = await new_mrealm(master, keys)
    await m.watch(
        RC, "on_routercluster_node_added", "on_routercluster_node_removed",
        "on_workergroup_added", "on_workergroup_removed",
    )
    n1, _ = await m.pair_node(tmp_path, "edge1")
    n2, _ = await m.pair_node(tmp_path, "edge2")
    c = await w(m.s.call(RC + "create_routercluster", {"name": "cluster1"}))

    # No nodes: nowhere to place workers.
    await expect_error(m.s, BAD_ARG, RC + "add_routercluster_workergroup", c["oid"], {"scale": 1})

    mem = await w(m.s.call(RC + "add_routercluster_node", c["oid"], n1["oid"], {"softlimit": 2, "hardlimit": 4}))
    assert mem == {"cluster_oid": c["oid"], "node_oid": n1["oid"], "softlimit": 2, "hardlimit": 4}, mem
    assert (await m.event("on_routercluster_node_added")) == mem
    await w(m.s.call(RC + "add_routercluster_node", c["oid"], n2["oid"]))
    await expect_error(m.s, EXISTS, RC + "add_routercluster_node", c["oid"], n1["oid"])
    await expect_error(m.s, NO_SUCH, RC + "add_routercluster_node", c["oid"], str(uuid.uuid4()))
    await expect_error(m.s, NO_SUCH, RC + "add_routercluster_node", str(uuid.uuid4()), n1["oid"])
    await expect_error(m.s, BAD_ARG, RC + "add_routercluster_node", c["oid"], n1["oid"], {"softlimit": "x"})

    assert set(await w(m.s.call(RC + "list_routercluster_nodes", c["oid"]))) == {n1["oid"], n2["oid"]}
    assert await w(m.s.call(RC + "list_routercluster_nodes", c["oid"], True)) == ["edge1", "edge2"]
    assert len(await w(m.s.call(RC + "list_routercluster_nodes", c["oid"], False, "offline"))) == 2
    await expect_error(m.s, BAD_ARG, RC + "list_routercluster_nodes", c["oid"], False, "sleepy")
    assert await w(m.s.call(RC + "get_routercluster_node", c["oid"], n1["oid"])) == mem
    await expect_error(m.s, NO_SUCH, RC + "get_routercluster_node", c["oid"], str(uuid.uuid4()))

    wg = await w(m.s.call(RC + "add_routercluster_workergroup", c["oid"], {"scale": 3}))
    assert wg["name"] == f"cwg_{wg['oid'][:8]}" and wg["scale"] == 3, wg
    assert wg["cluster_oid"] == c["oid"] and wg["status"] == "STOPPED", wg
    assert (await m.event("on_workergroup_added")) == wg
    wg2 = await w(m.s.call(RC + "add_routercluster_workergroup", c["oid"], {"name": "wg2"}))
    assert wg2["scale"] == 1, wg2
    await expect_error(m.s, EXISTS, RC + "add_routercluster_workergroup", c["oid"], {"name": "wg2"})
    await expect_error(m.s, BAD_ARG, RC + "add_routercluster_workergroup", c["oid"], {"scale": 0})
    await expect_error(m.s, BAD_ARG, RC + "add_routercluster_workergroup", c["oid"], {"scale": 129})
    await expect_error(m.s, BAD_CONFIG, RC + "add_routercluster_workergroup", c["oid"], {"name": "Bad Name"})

    st = await w(m.s.call(RC + "stat_routercluster_workergroup", c["oid"], wg["oid"]))
    assert st["stats"]["workers"] == 3 and st["stats"]["nodes"] == 2, st
    names = sorted(p["worker_name"] for p in st["placements"])
    assert names == [f"{wg['name']}_{i}" for i in (1, 2, 3)], names
    # Spread over the least loaded nodes: 2 + 1.
    per_node = sorted([p["node_oid"] for p in st["placements"]].count(n["oid"]) for n in (n1, n2))
    assert per_node == [1, 2], st

    assert set(await w(m.s.call(RC + "list_routercluster_workergroups", c["oid"]))) == {wg["oid"], wg2["oid"]}
    assert await w(m.s.call(RC + "list_routercluster_workergroups", c["oid"], True)) == sorted([wg["name"], "wg2"])
    assert len(await w(m.s.call(RC + "list_routercluster_workergroups", c["oid"], False, "RUNNING"))) == 0
    assert await w(m.s.call(RC + "get_routercluster_workergroup", c["oid"], wg2["oid"])) == wg2
    assert await w(m.s.call(RC + "get_routercluster_workergroup_by_name", "cluster1", "wg2")) == wg2
    await expect_error(m.s, NO_SUCH, RC + "get_routercluster_workergroup_by_name", "cluster1", "nope")
    await expect_error(m.s, NO_SUCH, RC + "get_routercluster_workergroup_by_name", "nocluster", "wg2")
    await expect_error(m.s, NO_SUCH, RC + "get_routercluster_workergroup", c["oid"], str(uuid.uuid4()))

    stat = await w(m.s.call(RC + "stat_routercluster", c["oid"]))
    assert stat["stats"]["nodes"] == 2 and stat["stats"]["workergroups"] == 2, stat
    assert stat["stats"]["workers"] == 4, stat

    # Nodes with workers placed on them stay in the cluster.
    await expect_error(m.s, "crossbar.error.dependent_objects", RC + "remove_routercluster_node", c["oid"], n1["oid"])

    # A worker group a started application realm runs on is not removed.
    a = await w(m.s.call(AREALM + "create_arealm", {"name": "app1"}))
    await w(m.s.call(AREALM + "start_arealm", a["oid"], wg2["oid"], None))
    await expect_error(m.s, "crossbar.error.dependent_objects", RC + "remove_routercluster_workergroup", c["oid"], wg2["oid"])
    await w(m.s.call(AREALM + "stop_arealm", a["oid"]))
    await status_becomes(m.s, AREALM + "get_arealm", a["oid"], "STOPPED")

    for g in (wg, wg2):
        removed = await w(m.s.call(RC + "remove_routercluster_workergroup", c["oid"], g["oid"]))
        assert removed["oid"] == g["oid"], removed
    assert (await m.event("on_workergroup_removed"))["oid"] == wg["oid"]
    await expect_error(m.s, NO_SUCH, RC + "remove_routercluster_workergroup", c["oid"], wg["oid"])

    removed = await w(m.s.call(RC + "remove_routercluster_node", c["oid"], n1["oid"]))
    assert removed["node_oid"] == n1["oid"], removed
    assert (await m.event("on_routercluster_node_removed"))["node_oid"] == n1["oid"]
    await expect_error(m.s, NO_SUCH, RC + "remove_routercluster_node", c["oid"], n1["oid"])
    assert await w(m.s.call(RC + "list_routercluster_nodes", c["oid"])) == [n2["oid"]]

    # Deleting the stopped cluster takes its remaining members along.
    await w(m.s.call(RC + "delete_routercluster", c["oid"]))


@aio
async def test_webcluster_lifecycle(master, keys):
    m = await new_mrealm(master, keys)
    await m.watch(
        WC, "on_webcluster_created", "on_webcluster_deleted", "on_webcluster_starting",
        "on_webcluster_stopping", "on_webcluster_stopped",
    )
    c = await w(m.s.call(WC + "create_webcluster", {"name": "wc1", "tcp_port": 18090, "http_hsts": True}))
    assert set(c) == WEBCLUSTER_FIELDS, c
    assert c["tcp_port"] == 18090 and c["http_hsts"] is True and c["tls_key"] is None, c
    assert c["status"] == "STOPPED" and c["owner_oid"] == m.mrealm["owner"], c
    assert (await m.event("on_webcluster_created")) == c
    await expect_error(m.s, EXISTS, WC + "create_webcluster", {"name": "wc1"})
    await expect_error(m.s, BAD_CONFIG, WC + "create_webcluster", {"name": "Web Cluster"})

    c2 = await w(m.s.call(WC + "create_webcluster", {"name": "abc"}))
    assert set(await w(m.s.call(WC + "list_webclusters"))) == {c["oid"], c2["oid"]}
    assert await w(m.s.call(WC + "list_webclusters", True)) == ["abc", "wc1"]
    assert await w(m.s.call(WC + "get_webcluster", c["oid"])) == c
    assert await w(m.s.call(WC + "get_webcluster_by_name", "wc1")) == c
    await expect_error(m.s, NO_SUCH, WC + "get_webcluster", str(uuid.uuid4()))
    await expect_error(m.s, NO_SUCH, WC + "get_webcluster_by_name", "nope")

    started = await w(m.s.call(WC + "start_webcluster", c["oid"]))
    assert started["status"] == "STARTING" and started["oid"] == c["oid"], started
    assert (await m.event("on_webcluster_starting"))["status"] == "STARTING"
    await expect_error(m.s, "crossbar.error.cannot_start", WC + "start_webcluster", c["oid"])
    await expect_error(m.s, "crossbar.error.not_stopped", WC + "delete_webcluster", c["oid"])
    stopped = await w(m.s.call(WC + "stop_webcluster", c["oid"]))
    assert stopped["status"] == "STOPPING", stopped
    assert (await m.event("on_webcluster_stopping"))["status"] == "STOPPING"
    assert (await m.event("on_webcluster_stopped", timeout=15))["status"] == "STOPPED"
    await expect_error(m.s, "crossbar.error.cannot_stop", WC + "stop_webcluster", c["oid"])

    deleted = await w(m.s.call(WC + "delete_webcluster", c["oid"]))
    assert deleted["oid"] == c["oid"], deleted
    assert (await m.event("on_webcluster_deleted"))["oid"] == c["oid"]
    await expect_error(m.s, NO_SUCH, WC + "delete_webcluster", c["oid"])


@aio
async def test_webcluster_nodes_and_services(master, keys, tmp_path):
    m = await new_mrealm(master, keys)
    await m.watch(
        WC, "on_webcluster_node_added", "on_webcluster_node_removed", "on_webservice_added",
        "on_webservice_removed",
    )
    n1, _ = await m.pair_node(tmp_path, "web1")
    c = await w(m.s.call(WC + "create_webcluster", {"name": "wc1"}))

    mem = await w(m.s.call(WC + "add_webcluster_node", c["oid"], n1["oid"], {"parallel": 2, "standby": False}))
    assert mem == {"cluster_oid": c["oid"], "node_oid": n1["oid"], "parallel": 2, "standby": False}, mem
    assert (await m.event("on_webcluster_node_added")) == mem
    await expect_error(m.s, EXISTS, WC + "add_webcluster_node", c["oid"], n1["oid"])
    await expect_error(m.s, NO_SUCH, WC + "add_webcluster_node", c["oid"], str(uuid.uuid4()))
    await expect_error(m.s, BAD_ARG, WC + "add_webcluster_node", c["oid"], n1["oid"], {"parallel": 0})
    assert await w(m.s.call(WC + "list_webcluster_nodes", c["oid"])) == [n1["oid"]]
    assert await w(m.s.call(WC + "list_webcluster_nodes", c["oid"], True)) == ["web1"]
    assert await w(m.s.call(WC + "list_webcluster_nodes", c["oid"], False, "online")) == []
    assert await w(m.s.call(WC + "get_webcluster_node", c["oid"], n1["oid"])) == mem

    svc = await w(m.s.call(WC + "add_webcluster_service", c["oid"], "info", {"type": "nodeinfo"}))
    assert svc["path"] == "info" and svc["type"] == "nodeinfo" and svc["webcluster_oid"] == c["oid"], svc
    assert is_oid(svc["oid"]), svc
    assert (await m.event("on_webservice_added")) == svc
    svc2 = await w(m.s.call(WC + "add_webcluster_service", c["oid"], "static/files", {"type": "static", "directory": ".."}))
    assert svc2["directory"] == "..", svc2
    await expect_error(m.s, EXISTS, WC + "add_webcluster_service", c["oid"], "info", {"type": "json", "value": 1})
    await expect_error(m.s, BAD_ARG, WC + "add_webcluster_service", c["oid"], "x", {"type": "ftp"})
    await expect_error(m.s, NO_SUCH, WC + "add_webcluster_service", str(uuid.uuid4()), "x", {"type": "json"})

    assert await w(m.s.call(WC + "list_webcluster_services", c["oid"])) == {"info": svc["oid"], "static/files": svc2["oid"]}
    assert await w(m.s.call(WC + "list_webcluster_services", c["oid"], "stat")) == {"static/files": svc2["oid"]}
    assert await w(m.s.call(WC + "get_webcluster_service", c["oid"], svc["oid"])) == svc
    assert await w(m.s.call(WC + "get_webcluster_service_by_path", c["oid"], "info")) == svc
    await expect_error(m.s, NO_SUCH, WC + "get_webcluster_service_by_path", c["oid"], "nope")
    await expect_error(m.s, NO_SUCH, WC + "get_webcluster_service", c["oid"], str(uuid.uuid4()))

    # Services are configured while the cluster is stopped.
    await w(m.s.call(WC + "start_webcluster", c["oid"]))
    await expect_error(m.s, "crossbar.error.not_stopped", WC + "add_webcluster_service", c["oid"], "x", {"type": "json"})
    await w(m.s.call(WC + "stop_webcluster", c["oid"]))
    await status_becomes(m.s, WC + "get_webcluster", c["oid"], "STOPPED")

    # A web cluster a started application realm uses is not deleted.
    rc = await w(m.s.call(RC + "create_routercluster", {"name": "rc1"}))
    n2, _ = await m.pair_node(tmp_path, "rtr1")
    await w(m.s.call(RC + "add_routercluster_node", rc["oid"], n2["oid"]))
    wg = await w(m.s.call(RC + "add_routercluster_workergroup", rc["oid"], {"name": "wg1"}))
    a = await w(m.s.call(AREALM + "create_arealm", {"name": "app1"}))
    await w(m.s.call(AREALM + "start_arealm", a["oid"], wg["oid"], c["oid"]))
    await expect_error(m.s, "crossbar.error.dependent_objects", WC + "delete_webcluster", c["oid"])
    await w(m.s.call(AREALM + "stop_arealm", a["oid"]))
    await status_becomes(m.s, AREALM + "get_arealm", a["oid"], "STOPPED")

    removed = await w(m.s.call(WC + "remove_webcluster_service", c["oid"], svc["oid"]))
    assert removed["oid"] == svc["oid"], removed
    assert (await m.event("on_webservice_removed"))["oid"] == svc["oid"]
    await expect_error(m.s, NO_SUCH, WC + "remove_webcluster_service", c["oid"], svc["oid"])

    removed = await w(m.s.call(WC + "remove_webcluster_node", c["oid"], n1["oid"]))
    assert removed["node_oid"] == n1["oid"], removed
    assert (await m.event("on_webcluster_node_removed"))["node_oid"] == n1["oid"]
    await expect_error(m.s, NO_SUCH, WC + "get_webcluster_node", c["oid"], n1["oid"])

    deleted = await w(m.s.call(WC + "delete_webcluster", c["oid"]))
    assert deleted["oid"] == c["oid"], deleted


@aio
async def test_cluster_writes_need_owner_or_admin(master, keys, tmp_path):
    m = await new_mrealm(master, keys)
    c = await w(m.s.call(RC + "create_routercluster", {"name": "cluster1"}))
    wc = await w(m.s.call(WC + "create_webcluster", {"name": "wc1"}))
    _, kp = await m.pair_node(tmp_path)
    node = await m.join_as_node(kp)
    denied = "wamp.error.not_authorized"
    await expect_error(node, denied, RC + "create_routercluster", {"name": "cluster2"})
    await expect_error(node, denied, RC + "start_routercluster", c["oid"])
    await expect_error(node, denied, RC + "delete_routercluster", c["oid"])
    await expect_error(node, denied, WC + "create_webcluster", {"name": "wc2"})
    await expect_error(node, denied, WC + "delete_webcluster", wc["oid"])
    assert await w(m.s.call(RC + "list_routerclusters")) == [c["oid"]]
    assert await w(m.s.call(WC + "list_webclusters")) == [wc["oid"]]
