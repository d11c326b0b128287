"""Nodes simulated by an autobahn session joined with the node's paired key, as the edge
node's management uplink does: the node API in miniature, a router worker's tracing
procedures (crossbar/edge/worker/router.py: start validates the options, stop deletes the
trace), and a recorder of the tracing events a session receives. The real edge node is
covered in test_crossbar_edge.py."""

from autobahn.wamp.exception import ApplicationError
from autobahn.wamp.types import PublishOptions, SubscribeOptions

from conftest import w
from waiting import wait_until

ACK = PublishOptions(acknowledge=True)
NO_SUCH_OBJECT = "crossbar.error.no_such_object"
# The tracing events of a management realm.
TRACING_EVENTS = "crossbarfabriccenter.mrealm.tracing."


async def serve_node_api(s, authid):
    """What the edge node's bridge registers, in miniature; returns the list of calls made
    to start_worker and get_router_realms."""
    p = f"crossbarfabriccenter.node.{authid}."
    calls = []

    def get_status():
        return {"management_node_id": authid, "workers_by_type": {"router": 1}, "title": "sim"}

    def start_worker(worker_id, worker_type, worker_options=None, **kw):
        calls.append(("start_worker", worker_id, worker_type, worker_options, kw))
        return {"id": worker_id, "type": worker_type}

    def get_worker(worker_id, include_stats=False):
        raise ApplicationError("crossbar.error.no_such_worker", f"no worker {worker_id}")

    def realms(*args, **kw):
        calls.append(("get_router_realms", args, kw))
        return ["realm001"]

    def session_count(*args):
        return 7

    await w(s.register(get_status, p + "get_status"))
    await w(s.register(start_worker, p + "start_worker"))
    await w(s.register(get_worker, p + "get_worker"))
    await w(s.register(realms, p + "worker.rtr1.get_router_realms"))
    await w(s.register(session_count, p + "worker.rtr1.realm.realm001.root.wamp.session.count"))
    return calls


class SimRouterWorker:
    """The tracing procedures of an edge router worker, registered by the node's session
    under crossbarfabriccenter.node.<authid>.worker.<worker_id>."""

    def __init__(self, session, authid, worker_id):
        self.s = session
        self.authid = authid
        self.worker_id = worker_id
        self.prefix = f"crossbarfabriccenter.node.{authid}.worker.{worker_id}."
        self.traces = {}
        self.calls = []

    async def serve(self):
        for name in ("get_traces", "get_trace", "start_trace", "stop_trace", "get_trace_data"):
            await w(self.s.register(getattr(self, name), self.prefix + name))
        return self

    def _get(self, trace_id):
        if trace_id not in self.traces:
            raise ApplicationError(NO_SUCH_OBJECT, f"No trace with ID '{trace_id}'")
        return self.traces[trace_id]

    def get_traces(self, include_stopped=False):
        self.calls.append(("get_traces",))
        return sorted(self.traces)

    def get_trace(self, trace_id):
        self.calls.append(("get_trace", trace_id))
        return self._get(trace_id)["info"]

    def start_trace(self, trace_id=None, trace_options=None):
        self.calls.append(("start_trace", trace_id, trace_options))
        options = trace_options or {}
        period = options.get("batching_period", 200)
        if not isinstance(period, int) or not 10 <= period <= 10000:
            raise ApplicationError("crossbar.error.invalid_configuration",
                                   "invalid tracing options: batching_period must be an integer [10, 10000]")
        if trace_id in self.traces:
            raise ApplicationError("crossbar.error.already_running", f"trace {trace_id} is already running")
        info = {"id": trace_id, "node_id": self.authid, "worker_id": self.worker_id, "status": "running",
                "options": {"batching_period": period}}
        self.traces[trace_id] = {"info": info, "records": []}
        return info

    def stop_trace(self, trace_id):
        self.calls.append(("stop_trace", trace_id))
        t = self._get(trace_id)
        del self.traces[trace_id]
        return dict(t["info"], status="stopped")

    def get_trace_data(self, trace_id, from_seq, to_seq=None, limit=None):
        self.calls.append(("get_trace_data", trace_id, from_seq, limit))
        limit = limit or 100
        return self._get(trace_id)["records"][:limit]

    async def emit(self, trace_id, period, records, worker_id=None):
        """A finished batching period, published as the edge's bridge forwards it."""
        if trace_id in self.traces:
            self.traces[trace_id]["records"].extend(records)
        topic = f"crossbarfabriccenter.node.{self.authid}.worker.{worker_id or self.worker_id}.on_trace_data"
        await w(self.s.publish(topic, trace_id, period, records, options=ACK))


class TracingEvents:
    """Every crossbarfabriccenter.mrealm.tracing.* event a session receives, in order."""

    def __init__(self):
        self.got = []

    async def watch(self, session):
        def on_event(*args, details=None):
            self.got.append((details.topic[len(TRACING_EVENTS):], list(args)))

        await w(session.subscribe(on_event, TRACING_EVENTS, options=SubscribeOptions(match="prefix", details_arg="details")))
        return self

    def of(self, name):
        return [args for t, args in self.got if t == name]

    async def wait(self, pred, what, timeout=5.0):
        """Until ``pred()`` holds (bounded); the report shows every event received."""
        await wait_until(pred, timeout, what=lambda: f"{what}; got {self.got!r}")
