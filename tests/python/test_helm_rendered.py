"""The rendered Helm chart runs: `helm/check.py` renders the chart with
`helm/values-tests/docker.yaml` (3 voters, a serving pool of 2); this test runs what it
rendered as Docker containers of the project's image, the way Kubernetes would run the pods:
each StatefulSet pod gets its host name, the rendered env (fieldRefs, secretKeyRefs and
`$(VAR)` expanded), args, security context (user, read-only root, no capabilities), its
Secret volumes as files, a volume per voter that outlives the container (the PVC) and an
empty one per serving pod (emptyDir), and the headless Service's DNS name as a network
alias. haproxy, health-checking `/readyz`, stands in for the client Service.

From the rendered configuration alone: the cluster forms (voters 1-3, learners 1001, 1002);
a client and a simulated edge node work through the load balancer; the backup CronJob's pod
writes backups that restore and keeps the newest; a voter restarted with its volume rejoins; the serving pool scaled 2 → 4 → 1 changes the membership accordingly; a
rolling restart of every pod, one at a time and each waited for until ready, loses no
acknowledged write and leaves the node callable.

Needs the image (docker/build.sh) and FABRIC_HELM_RENDERED (the rendering); scripts/test
sets both up. FABRIC_SKIP_DOCKER=1 skips it, as it skips every Docker test."""

import asyncio
import base64
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from autobahn.wamp.exception import ApplicationError

from conftest import KeyPair, aio, join, require_binary, w
from mgmt import join_node, node_key, unique
from simnode import serve_node_api
from waiting import wait_for, wait_until

FIXTURES = Path(__file__).parent / "fixtures"
RENDERED = os.environ.get("FABRIC_HELM_RENDERED")

pytestmark = pytest.mark.skipif(os.environ.get("FABRIC_SKIP_DOCKER") == "1",
                                reason="FABRIC_SKIP_DOCKER=1: the Docker tests are left out")


def docker(*args, check=True, timeout=120) -> str:
    r = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)}: {r.stdout}{r.stderr}")
    return r.stdout.strip()


def http_status(url: str) -> int:
    import urllib.error
    import urllib.request
    try:
        return urllib.request.urlopen(url, timeout=2).status
    except urllib.error.HTTPError as e:
        return e.code
    except Exception:  # noqa: BLE001 - not answering yet
        return 0


class Rendering:
    """The rendered objects, by kind and name."""

    def __init__(self, path: str):
        self.objects = [d for d in yaml.safe_load_all(Path(path).read_text()) if d]

    def one(self, kind: str, name_suffix: str = "") -> dict:
        found = [o for o in self.objects if o["kind"] == kind and o["metadata"]["name"].endswith(name_suffix)]
        assert found, f"no {kind} *{name_suffix} in the rendering"
        return found[0]

    def secret_files(self, name: str) -> dict[str, bytes]:
        s = self.one("Secret", name)
        files = {k: base64.b64decode(v) for k, v in (s.get("data") or {}).items()}
        files.update({k: v.encode() for k, v in (s.get("stringData") or {}).items()})
        return files

    def headless(self) -> str:
        svc = next(o for o in self.objects if o["kind"] == "Service" and o["spec"].get("clusterIP") == "None")
        return svc["metadata"]["name"]


class Pod:
    """One StatefulSet pod as a container."""

    def __init__(self, world: "World", sts: dict, ordinal: int):
        self.world, self.sts, self.ordinal = world, sts, ordinal
        self.name = f"{sts['metadata']['name']}-{ordinal}"
        self.container = f"{self.name}-{world.suffix}"
        self.spec = sts["spec"]["template"]["spec"]
        self.main = self.spec["containers"][0]
        self.generation = 0
        self.ip = None

    @property
    def fqdn(self) -> str:
        return f"{self.name}.{self.world.peer_domain}"

    def env(self) -> dict[str, str]:
        out = {}
        for e in self.main.get("env", []):
            if "value" in e:
                # $(VAR) refers to variables defined before it.
                out[e["name"]] = re.sub(r"\$\((\w+)\)", lambda m: out.get(m.group(1), m.group(0)), str(e["value"]))
            else:
                ref = e["valueFrom"]
                if "fieldRef" in ref:
                    assert ref["fieldRef"]["fieldPath"] == "metadata.name", ref
                    out[e["name"]] = self.name
                else:
                    key = ref["secretKeyRef"]
                    out[e["name"]] = self.world.rendering.secret_files(key["name"])[key["key"]].decode()
        return out

    def volume_args(self) -> list[str]:
        volumes = {v["name"]: v for v in self.spec.get("volumes", [])}
        args = []
        for m in self.main["volumeMounts"]:
            v = volumes.get(m["name"])
            if v is None:  # from volumeClaimTemplates: a volume that outlives the pod
                args += ["-v", f"{self.world.suffix}-{m['name']}-{self.name}:{m['mountPath']}"]
            elif "emptyDir" in v:  # a fresh one per pod
                args += ["-v", f"{self.world.suffix}-{m['name']}-{self.name}-{self.generation}:{m['mountPath']}"]
            elif "persistentVolumeClaim" in v:  # a claim of the chart's: a directory here,
                # group-writable for fsGroup as Kubernetes makes it
                d = self.world.base / "pvc" / v["persistentVolumeClaim"]["claimName"]
                if not d.exists():
                    d.mkdir(parents=True)
                    os.chown(d, 0, self.world.fs_group)
                    d.chmod(0o2775)
                args += ["-v", f"{d}:{m['mountPath']}"]
            elif "secret" in v:
                files = self.world.rendering.secret_files(v["secret"]["secretName"])
                items = v["secret"].get("items") or [{"key": k, "path": k} for k in files]
                d = self.world.base / self.name / m["name"]
                d.mkdir(parents=True, exist_ok=True)
                for item in items:
                    p = d / item["path"]
                    p.write_bytes(files[item["key"]])
                    # Kubernetes: owned by root, group fsGroup, mode defaultMode|0440.
                    os.chown(p, 0, self.world.fs_group)
                    p.chmod(0o440)
                d.chmod(0o755)
                args += ["-v", f"{d}:{m['mountPath']}:ro"]
            else:
                raise AssertionError(f"volume kind not emulated: {v}")
        return args

    def run(self, replica: bool = True):
        """A replica pod gets its peer name and the headless Service's name (which resolves to
        every replica pod, ready or not); a Job's pod neither."""
        psc = self.spec.get("securityContext", {})
        sc = self.main.get("securityContext", {})
        aliases = ["--network-alias", self.fqdn, "--network-alias", self.world.peer_domain] if replica else []
        args = ["run", "-d", "--name", self.container, "--hostname", self.name,
                "--network", self.world.network, *aliases,
                "--user", f"{psc['runAsUser']}:{psc['runAsGroup']}", "--group-add", str(psc["fsGroup"]),
                "--security-opt", "no-new-privileges"]
        if sc.get("readOnlyRootFilesystem"):
            args.append("--read-only")
        for cap in sc.get("capabilities", {}).get("drop", []):
            args += ["--cap-drop", cap]
        for k, v in self.env().items():
            args += ["-e", f"{k}={v}"]
        args += self.volume_args()
        args += [self.main["image"], *self.main.get("args", [])]
        docker(*args)
        self.ip = docker("inspect", "-f", f'{{{{(index .NetworkSettings.Networks "{self.world.network}").IPAddress}}}}',
                         self.container)

    def ready(self) -> bool:
        return http_status(f"http://{self.ip}:9000/readyz") == 200

    def stop(self):
        """SIGTERM, then SIGKILL after the rendered grace period, as the kubelet does."""
        grace = self.spec["terminationGracePeriodSeconds"]
        docker("stop", "-t", str(grace), self.container, timeout=grace + 30)
        docker("rm", self.container)

    def recreate(self):
        """A new pod for the same ordinal: a new container (new IP), same PVC, new emptyDir."""
        self.stop()
        self.generation += 1
        self.run()


class World:
    """The containers, the network, haproxy in front."""

    def __init__(self, rendering: Rendering, base: Path):
        self.rendering, self.base = rendering, base
        self.suffix = "fmh" + uuid.uuid4().hex[:6]
        self.network = f"{self.suffix}-net"
        voters_sts = rendering.one("StatefulSet", "fabric-master")
        serving_sts = rendering.one("StatefulSet", "-serving")
        self.fs_group = voters_sts["spec"]["template"]["spec"]["securityContext"]["fsGroup"]
        ns = "fabric"
        self.peer_domain = f"{rendering.headless()}.{ns}.svc.cluster.local"
        self.voters = [Pod(self, voters_sts, i) for i in range(voters_sts["spec"]["replicas"])]
        self.serving_sts = serving_sts
        self.serving = [Pod(self, serving_sts, i) for i in range(serving_sts["spec"]["replicas"])]
        self.haproxy = None
        self.lb_port = None
        self.sock = str(base / "haproxy.sock")
        tls = rendering.secret_files("peer-tls")
        self.tls_dir = base / "operator-tls"
        self.tls_dir.mkdir()
        for k, v in tls.items():
            (self.tls_dir / k).write_bytes(v)

    def pods(self):
        return self.voters + self.serving

    def start_lb(self):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.lb_port = s.getsockname()[1]
        cfg = self.base / "haproxy.cfg"
        cfg.write_text(f"""global
    stats socket {self.sock} mode 600 level admin
defaults
    mode http
    timeout connect 2s
    timeout client 30s
    timeout server 30s
    timeout tunnel 1h
frontend ws
    bind 127.0.0.1:{self.lb_port}
    default_backend pods
backend pods
    balance leastconn
    option redispatch
    retries 3
    option httpchk GET /readyz
    http-check expect status 200
    default-server inter 500ms fall 2 rise 2
    server-template p 1-16 127.0.0.1:1 check disabled
""")
        subprocess.run(["haproxy", "-D", "-f", str(cfg), "-p", str(self.base / "haproxy.pid")], check=True)
        self.haproxy = int((self.base / "haproxy.pid").read_text())

    def lb_cmd(self, cmd: str) -> str:
        s = socket.socket(socket.AF_UNIX)
        s.settimeout(5)
        s.connect(self.sock)
        s.sendall((cmd + "\n").encode())
        out = b""
        while chunk := s.recv(65536):
            out += chunk
        s.close()
        return out.decode()

    def lb_sync(self):
        """The Service's endpoints: every pod's current address (health checks take the unready out)."""
        pods = self.pods()
        for slot in range(1, 17):
            if slot <= len(pods) and pods[slot - 1].ip:
                self.lb_cmd(f"set server pods/p{slot} addr {pods[slot - 1].ip} port 9000")
                self.lb_cmd(f"set server pods/p{slot} state ready")
            else:
                self.lb_cmd(f"set server pods/p{slot} state maint")

    @property
    def lb(self):
        return SimpleNamespace(url=f"ws://127.0.0.1:{self.lb_port}/ws", port=self.lb_port, ssl=None)

    def cluster_status(self) -> dict | None:
        """`fabric-master cluster status` from this host, with the rendered peer certificate."""
        for pod in self.voters:
            if not pod.ip:
                continue
            r = subprocess.run([require_binary(), "cluster", "--peer", f"{pod.ip}:9401",
                                "--peer-tls-ca", str(self.tls_dir / "ca.crt"),
                                "--peer-tls-cert", str(self.tls_dir / "tls.crt"),
                                "--peer-tls-key", str(self.tls_dir / "tls.key"), "status"],
                               capture_output=True, text=True, timeout=20, env=dict(os.environ, RUST_BACKTRACE="0"))
            if r.returncode == 0:
                import json
                return json.loads(r.stdout)
        return None

    def presence(self) -> str:
        for pod in self.voters:
            r = subprocess.run([require_binary(), "state", "--peer", f"{pod.ip}:9401",
                                "--peer-tls-ca", str(self.tls_dir / "ca.crt"),
                                "--peer-tls-cert", str(self.tls_dir / "tls.crt"),
                                "--peer-tls-key", str(self.tls_dir / "tls.key"), "list", "presence"],
                               capture_output=True, text=True, timeout=20, env=dict(os.environ, RUST_BACKTRACE="0"))
            if r.returncode == 0:
                return r.stdout
        return "(no answer)"

    def logs(self) -> str:
        out = []
        for p in self.pods():
            r = subprocess.run(["docker", "logs", "--tail", "8", p.container], capture_output=True, text=True)
            out.append(f"--- {p.name} ---\n{r.stdout}{r.stderr}")
        return "\n".join(out)

    def teardown(self):
        if self.haproxy:
            subprocess.run(["kill", str(self.haproxy)], capture_output=True)
        ids = docker("ps", "-aq", "--filter", f"name={self.suffix}", check=False).split()
        if ids:
            docker("rm", "-f", *ids, check=False)
        vols = docker("volume", "ls", "-q", "--filter", f"name={self.suffix}", check=False).split()
        if vols:
            docker("volume", "rm", "-f", *vols, check=False)
        docker("network", "rm", self.network, check=False)


def wait_ready(world: World, pods, timeout=120):
    wait_for(lambda: all(p.ready() for p in pods), timeout, 0.3,
             what=lambda: f"{[p.name for p in pods if not p.ready()]} ready\n{world.logs()}")


def wait_membership(world: World, voters, learners, timeout=60):
    last = {}

    def matches():
        s = world.cluster_status()
        last["s"] = s
        return s and sorted(s["voters"]) == voters and sorted(s["learners"]) == learners and s["leader"]

    wait_for(matches, timeout, 0.5, what=lambda: f"voters {voters} learners {learners}: {last.get('s')}")


@pytest.fixture(scope="module")
def world():
    if not RENDERED:
        pytest.fail("FABRIC_HELM_RENDERED is not set: run `python helm/check.py --out DIR` and point it at "
                    "DIR/docker.yaml (scripts/test does)", pytrace=False)
    if shutil.which("haproxy") is None:
        pytest.fail("haproxy is not installed", pytrace=False)
    rendering = Rendering(RENDERED)
    image = rendering.one("StatefulSet", "fabric-master")["spec"]["template"]["spec"]["containers"][0]["image"]
    if subprocess.run(["docker", "image", "inspect", image], capture_output=True).returncode != 0:
        pytest.fail(f"no image {image}: run docker/build.sh", pytrace=False)
    base = Path(tempfile.mkdtemp(prefix="fabric-helm-run-"))
    wd = World(rendering, base)
    docker("network", "create", wd.network)
    try:
        wd.start_lb()
        # podManagementPolicy Parallel: every pod at once.
        for pod in wd.pods():
            pod.run()
        wd.lb_sync()
        yield wd
    finally:
        wd.teardown()


def superuser_keys():
    return SimpleNamespace(superuser=KeyPair(FIXTURES / "helm-superuser.priv", FIXTURES / "helm-superuser.pub"))


class SimNode:
    """A simulated edge node that joins through the load balancer and comes back when its
    session is closed (a drained or restarted pod), as a real edge node does. It lives on an
    event loop of its own thread, so it outlives each test's loop."""

    def __init__(self, world, kp, authid):
        self.world, self.kp, self.authid = world, kp, authid
        self.session = None
        self.stop = False
        self.sessions = 0
        self.last_error = None

    def start_in_thread(self):
        """In a fresh context: the test's session bookkeeping (conftest closes the sessions a
        test opened when it ends) must not take the node's sessions along."""
        import contextvars
        import threading
        started = threading.Event()

        def main():
            self.loop = asyncio.new_event_loop()
            asyncio.set_event_loop(self.loop)
            self.loop.create_task(self.run())
            started.set()
            self.loop.run_forever()

        threading.Thread(target=lambda: contextvars.Context().run(main), daemon=True).start()
        assert started.wait(10)

    def shutdown(self):
        self.stop = True
        if self.session is not None:
            self.loop.call_soon_threadsafe(self.session.drop)
        self.loop.call_soon_threadsafe(self.loop.stop)

    async def run(self):
        while not self.stop:
            try:
                self.session = await join_node(self.world.lb, self.kp)
                await serve_node_api(self.session, self.authid)
                self.sessions += 1
                await asyncio.shield(self.session.left_f)
            except Exception as e:  # noqa: BLE001 - reconnect, as a node does
                self.last_error = repr(e)
                await asyncio.sleep(0.3)


@pytest.mark.timeout(300)
def test_the_cluster_forms_from_the_rendered_configuration(world):
    wait_ready(world, world.pods())
    wait_membership(world, [1, 2, 3], [1001, 1002])


@pytest.mark.timeout(150)
@aio(timeout=120)
async def test_client_and_edge_node_through_the_load_balancer(world, tmp_path):
    keys = superuser_keys()
    su = await join(world.lb, keys)
    mrealm = await w(su.call("crossbarfabriccenter.mrealm.create_mrealm", {"name": "helm-mrealm"}))
    name = unique("helmnode")
    kp = node_key(tmp_path, name)
    node = await w(su.call("crossbarfabriccenter.mrealm.pair_node", kp.pubkey_hex, mrealm["name"], name))
    await su.close()
    world.node = SimNode(world, kp, name)
    world.node_oid = node["oid"]
    world.node.start_in_thread()
    world.keys = keys

    async def callable_once():
        try:
            s = await join(world.lb, keys, realm="helm-mrealm")
            try:
                return await w(s.call("crossbarfabriccenter.remote.node.get_status", world.node_oid), 5)
            finally:
                await s.close()
        except Exception as e:  # noqa: BLE001 - not yet
            world.last_error = repr(e)
            return None

    world.last_error = None
    world.callable_once = callable_once
    # 60 s: on a loaded CI machine the containers' node session took longer than 30 s once;
    # the last error is in the message.
    st = await wait_until(callable_once, 60, 0.3,
                          what=lambda: f"the simulated node callable through the load balancer "
                                       f"(last error: {world.last_error})")
    assert st["management_node_id"] == name


@pytest.mark.timeout(180)
def test_the_backup_cronjob_writes_backups_that_restore(world, tmp_path):
    """The CronJob's pod, run as the Job controller would (three times): each run writes a
    whole backup through the headless Service's name with the rendered peer certificate, the
    oldest beyond `keep` (2) are deleted, and the newest restores into a fresh data dir."""
    cj = world.rendering.one("CronJob", "-backup")
    template = cj["spec"]["jobTemplate"]["spec"]["template"]
    assert template["spec"]["restartPolicy"] == "Never"
    job = Pod(world, {"metadata": {"name": cj["metadata"]["name"]}, "spec": {"template": template}}, 0)
    claim = next(v for v in template["spec"]["volumes"] if "persistentVolumeClaim" in v)
    backups = world.base / "pvc" / claim["persistentVolumeClaim"]["claimName"]
    seen = []
    for run in range(3):
        job.container = f"{job.name}-{run}-{world.suffix}"
        job.run(replica=False)
        code = docker("wait", job.container, timeout=120)
        logs = subprocess.run(["docker", "logs", job.container], capture_output=True, text=True)
        docker("rm", job.container)
        assert code == "0", f"backup run {run} exited {code}:\n{logs.stdout}{logs.stderr}"
        names = sorted(p.name for p in backups.glob("fabric-master-backup-*.bin"))
        seen.append(names)
        assert len(names) == min(run + 1, 2), (run, names, logs.stderr)
    assert seen[2][0] == seen[1][1], f"the oldest was deleted, the newest kept: {seen}"
    assert not list(backups.glob("*.partial"))
    r = subprocess.run([require_binary(), "restore", "--from", str(backups / seen[2][-1]),
                        "--data-dir", str(tmp_path / "restored"), "--node-id", "1"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    objects = int(re.search(r"restored (\d+) objects", r.stderr).group(1))
    assert objects >= 2, r.stderr  # at least helm-mrealm and its node, made by the test before


@aio(timeout=240)
async def test_a_voter_restarted_with_its_volume_rejoins(world):
    voter = world.voters[1]
    await asyncio.to_thread(voter.stop)
    await asyncio.to_thread(voter.run)  # the same PVC
    world.lb_sync()
    await asyncio.to_thread(wait_ready, world, [voter])
    await asyncio.to_thread(wait_membership, world, [1, 2, 3], [1001, 1002])
    st = await wait_until(world.callable_once, 30, 0.3, what=lambda: f"the node callable after the voter's restart ({world.last_error}, "
                               f"node sessions {world.node.sessions}, its last error {world.node.last_error}, "
                               f"its session left: {world.node.session.left_f.done() if world.node.session else None}; "
                               f"presence {world.presence()}; {world.logs()})")
    assert st["management_node_id"] == world.node.authid


@aio(timeout=300)
async def test_the_serving_pool_scales_2_4_1(world):
    for i in (2, 3):
        pod = Pod(world, world.serving_sts, i)
        world.serving.append(pod)
        await asyncio.to_thread(pod.run)
    world.lb_sync()
    await asyncio.to_thread(wait_ready, world, world.serving)
    await asyncio.to_thread(wait_membership, world, [1, 2, 3], [1001, 1002, 1003, 1004])
    # Scale-in removes the highest ordinals, one at a time; each leaves on SIGTERM.
    while len(world.serving) > 1:
        pod = world.serving.pop()
        await asyncio.to_thread(pod.stop)
        world.lb_sync()
    await asyncio.to_thread(wait_membership, world, [1, 2, 3], [1001])
    st = await wait_until(world.callable_once, 30, 0.3, what="the node callable after scaling")
    assert st["management_node_id"] == world.node.authid


@aio(timeout=600)
async def test_a_rolling_restart_loses_no_acknowledged_write(world):
    keys = world.keys
    done, errors, stop = [], [], asyncio.Event()

    async def writer():
        n = 0
        while not stop.is_set():
            try:
                s = await join(world.lb, keys, realm="helm-mrealm")
            except Exception:  # noqa: BLE001 - the load balancer's pod went away: again
                await asyncio.sleep(0.2)
                continue
            for _ in range(10):
                if stop.is_set() or s.left_f.done():
                    break
                n += 1
                name = f"roll-{n}"
                call = asyncio.ensure_future(s.call("crossbarfabriccenter.mrealm.arealm.create_arealm",
                                                    {"name": name}))
                await asyncio.wait([call, s.left_f], timeout=30, return_when=asyncio.FIRST_COMPLETED)
                if not call.done():
                    call.cancel()
                    break
                try:
                    call.result()
                    done.append(name)
                except ApplicationError as e:
                    if not s.left_f.done():
                        errors.append(f"{name}: {e.error} {e.args}")
                    break
                except Exception:  # noqa: BLE001 - the session closed under the call
                    break
            await s.close()

    task = asyncio.ensure_future(writer())
    try:
        # As the StatefulSet controller: each set from the highest ordinal down, one pod at a
        # time, the next only once the last is ready.
        for pod in [*reversed(world.serving), *reversed(world.voters)]:
            before = len(done)
            await asyncio.to_thread(pod.recreate)
            world.lb_sync()
            await asyncio.to_thread(wait_ready, world, [pod])
            await wait_until(lambda b=before: len(done) > b + 3, 60, 0.1,
                             what=f"writes while {pod.name} restarted")
        await asyncio.to_thread(wait_membership, world, [1, 2, 3], [1001])
    finally:
        stop.set()
        await asyncio.wait_for(task, 60)
    assert not errors, errors
    s = await join(world.lb, keys, realm="helm-mrealm")
    names = set(await w(s.call("crossbarfabriccenter.mrealm.arealm.list_arealms", True), 30))
    await s.close()
    missing = [n for n in done if n not in names]
    assert not missing, f"{len(missing)} acknowledged writes lost: {missing[:10]}"
    st = await wait_until(world.callable_once, 60, 0.3, what="the node callable after the rolling restart")
    assert st["management_node_id"] == world.node.authid
    print(f"rolling restart of {len(world.pods())} pods: {len(done)} writes acknowledged, all read back; "
          f"the node reconnected {world.node.sessions} times")
    world.node.shutdown()
