"""Ray placement: each replica runs on a node of a Ray cluster, supervised by an actor there.

The actor (``ReplicaSupervisor``) starts the same replica process ``local`` starts (our
replica server, or ``vllm serve`` behind the lifeline) on a free port of its node, bound to
the address the node reports, with the token drawn here; the gateway reaches the replica at
``http://NODE_IP:PORT``. The replica is told the actor's pid and gives up when it is gone,
so a killed actor or a lost node takes its replica with it. The actor's worker, and so the
replica, runs at its node's priority, not at the lower one Ray gives its workers.

What a replica asks of the cluster (``resources_for``) decides where it lands: CPUs and
memory for its engine, ``num_gpus`` for a GPU engine, and the custom resources
``gpu_type:NAME`` and ``region:NAME`` that nodes advertise (``ray start --resources``), so
a deployment's ``gpu_type`` and ``region`` choose the nodes. A GPU engine takes one unit of
its GPU type; any other replica naming a type or a region takes a sliver, enough to pick
the node without using it up. Replicas spread over nodes where they can.

A dead replica is one whose actor died (killed, its node lost: Ray says so once its health
checks fail) or whose process exited; the reconciler records the loss, replaces it through
the same ``start``, and records the recovery. ``cluster_capacity`` reads the GPU types and
regions the cluster's nodes advertise, for the synchronous fit check.

Actors are not detached: when the process that placed them is gone, Ray reclaims them and
their replicas follow, as ``local``'s children do.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import msgspec
import ray
from ray.exceptions import GetTimeoutError, RayActorError, RayError

from modelyard.adapters.engines.base import (
    CapacityUnavailable,
    Launch,
    PlacementError,
    ReplicaHandle,
    ReplicaSpec,
)
from modelyard.adapters.engines.models import gguf_paths
from modelyard.adapters.engines.registry import engine_for
from modelyard.adapters.placement.base import start_all
from modelyard.adapters.views.db import private_dir
from modelyard.domain.catalog.fit import HostCapacity
from modelyard.domain.catalog.hardware import GPU_TYPES, REGIONS

__all__ = [
    "RayCapacity",
    "RayPlacement",
    "ReplicaSupervisor",
    "cluster_capacity",
    "ray_host_capacity",
    "resources_for",
]

# The namespace every modelyard actor lives in (several products may share a cluster).
NAMESPACE = "modelyard"
GPU_TYPE_PREFIX = "gpu_type:"
REGION_PREFIX = "region:"
# What a replica takes of a GPU-type or region resource it only selects by (Ray's resolution
# is 0.0001): a node advertising one unit still takes thousands of them.
SELECTOR = 0.001
# CPUs a replica of our own server asks for: the simulated engine idles on an event loop.
SIMULATED_CPUS = 0.1
# Memory a llama.cpp replica asks for beyond its GGUF file (KV cache, the server itself).
LLAMACPP_OVERHEAD_BYTES = 512 * 1024 * 1024
# How long a replica may wait for a node with room before placement gives up and says why.
SCHEDULE_TIMEOUT_S = 180.0
# A node answering slower than this is not taken for dead: only Ray's own verdict is.
ALIVE_TIMEOUT_S = 10.0
HEALTH_POLL_S = 0.1
STOP_GRACE_S = 10.0
# How stale the fit check's view of the cluster may be: a request is refused on what Ray
# said this long ago at most (reading it costs a call to the cluster's GCS).
CAPACITY_TTL_S = 2.0
# The file whose modification time says when this placement last saw its replicas.
HEARTBEAT = "placement.alive"
# Ray raises every worker's niceness by ``worker_niceness`` (15), and a replica would inherit
# it: on a busy node llama.cpp's threads, which wait for one another at every step, then give
# way to whatever else the node runs (twice as slow at a load of 8 on 2 cores). The
# supervisor's worker keeps its node's priority instead, as Ray's own job supervisor does.
SUPERVISOR_RUNTIME_ENV = {"env_vars": {"RAY_worker_niceness": "0"}}

log = logging.getLogger(__name__)


def resources_for(spec: ReplicaSpec) -> dict[str, Any]:
    """The Ray options a replica of ``spec`` asks for: CPUs, memory, GPUs, GPU type, region."""
    engine = engine_for(spec.engine)
    custom: dict[str, float] = {}
    if spec.gpu_type:
        custom[GPU_TYPE_PREFIX + spec.gpu_type] = 1.0 if engine.needs_gpu else SELECTOR
    if spec.region:
        custom[REGION_PREFIX + spec.region] = SELECTOR
    options: dict[str, Any] = {"num_cpus": SIMULATED_CPUS, "num_gpus": 0, "resources": custom}
    if spec.engine == "llamacpp":
        size = Path(spec.path).stat().st_size if spec.path and Path(spec.path).exists() else 0
        options["num_cpus"] = float(spec.threads)
        options["memory"] = size + LLAMACPP_OVERHEAD_BYTES
    elif engine.needs_gpu:
        options["num_cpus"] = 1.0
        options["num_gpus"] = 1
    return options


def _free_port(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class ReplicaSupervisor:
    """Runs inside a Ray actor on a node: starts one replica process there and watches it."""

    def __init__(self, spec: bytes, token: str, name: str) -> None:
        bound = msgspec.msgpack.decode(spec, type=ReplicaSpec)
        engine = engine_for(bound.engine)
        self._host = ray.util.get_node_ip_address()  # type: ignore[no-untyped-call]
        bound = bound.on_port(_free_port(self._host))
        self._dir = Path(tempfile.mkdtemp(prefix="modelyard-replica-"))
        self._log = self._dir / f"{name}.log"
        launch = Launch(parent_pid=os.getpid(), log_file=str(self._log))
        command = engine.command(bound, launch)
        if command is None:
            raise PlacementError(f"the {engine.name} engine runs nothing to supervise")
        # The replica listens on the address the node reports, so the gateway can reach it.
        command = [*command, "--host", self._host]
        with self._log.open("ab") as out:
            self._proc = subprocess.Popen(
                command,
                stdout=out,
                stderr=out,
                stdin=subprocess.DEVNULL,
                env=os.environ | engine.environment(token),
            )
        self._url = f"http://{self._host}:{bound.port}"

    def where(self) -> tuple[str, int, str]:
        """The replica's base URL, its process id on the node, and the node's id."""
        return self._url, self._proc.pid, ray.get_runtime_context().get_node_id()

    def exit_code(self) -> int | None:
        """None while the replica runs; its exit status once it has exited."""
        return self._proc.poll()

    def tail(self, lines: int = 5) -> str:
        """The end of the replica's log, to say why it died."""
        try:
            text = self._log.read_bytes()[-4096:].decode(errors="replace")
        except OSError:
            return "(no log)"
        return " | ".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        """Terminate the replica (kill it after the grace), reap it, and remove its log."""
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                self._proc.kill()
        self._proc.wait()
        shutil.rmtree(self._dir, ignore_errors=True)


def connect(address: str) -> None:
    """Join the Ray cluster at ``address`` as a driver (once per process)."""
    if ray.is_initialized():
        return
    try:
        ray.init(
            address=address or None,
            namespace=NAMESPACE,
            log_to_driver=False,
            logging_level=logging.WARNING,
            configure_logging=False,
        )
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise PlacementError(f"cannot reach the Ray cluster at {address or '(default)'}: {exc}") from None


class ClusterView(msgspec.Struct, frozen=True, kw_only=True):
    """What the cluster's live nodes advertise: GPU types, regions, totals and what is free."""

    gpu_types: frozenset[str]
    regions: frozenset[str]
    total: dict[str, float]
    free: dict[str, float]


def cluster_capacity(address: str) -> ClusterView:
    """The GPU types and regions the cluster's live nodes advertise, and its free resources."""
    connect(address)
    gpus: set[str] = set()
    regions: set[str] = set()
    for node in ray.nodes():  # type: ignore[no-untyped-call]
        if not node.get("Alive"):
            continue
        for key in node.get("Resources", {}):
            if key.startswith(GPU_TYPE_PREFIX):
                gpus.add(key.removeprefix(GPU_TYPE_PREFIX))
            elif key.startswith(REGION_PREFIX):
                regions.add(key.removeprefix(REGION_PREFIX))
    return ClusterView(
        gpu_types=frozenset(gpus),
        regions=frozenset(regions),
        total={k: float(v) for k, v in ray.cluster_resources().items()},  # type: ignore[no-untyped-call]
        free=_free(),
    )


def _free() -> dict[str, float]:
    """What the cluster's live nodes have free now, summed over them."""
    return {k: float(v) for k, v in ray.available_resources().items()}  # type: ignore[no-untyped-call]


def ray_host_capacity(address: str, *, engine: str, gguf_models: str) -> HostCapacity:
    """The fit check's view of the cluster now: the GPU types and regions its live nodes
    advertise (no region advertised: all of them), the types with a GPU free, and the GGUF
    models its CPU replicas serve.

    A GPU type or region the catalog does not know is left out, with a warning.
    """
    view = cluster_capacity(address)
    gpus = view.gpu_types & GPU_TYPES.keys()
    regions = view.regions & set(REGIONS)
    for unknown in sorted((view.gpu_types - gpus) | (view.regions - regions)):
        log.warning("the Ray cluster advertises %r, which the catalog does not know; ignored", unknown)
    # A vLLM replica takes one whole unit of its type: a type with less than one free is full.
    free = frozenset(g for g in gpus if view.free.get(GPU_TYPE_PREFIX + g, 0.0) >= 1.0)
    return HostCapacity(
        simulated=engine == "simulated",
        cpu_models=frozenset(gguf_paths(gguf_models)),
        gpu_types=frozenset(gpus),
        regions=frozenset(regions) if view.regions else frozenset(REGIONS),
        typed_nodes=True,
        free_gpu_types=free,
    )


class RayCapacity:
    """The cluster's capacity as the fit check reads it on each request, read from Ray at most
    every ``ttl_s`` (nodes join and leave, GPUs are taken and freed)."""

    def __init__(self, address: str, *, engine: str, gguf_models: str, ttl_s: float = CAPACITY_TTL_S) -> None:
        self._address, self._engine, self._gguf_models = address, engine, gguf_models
        self._ttl_s = ttl_s
        self._lock = threading.Lock()
        self._seen: tuple[float, HostCapacity] | None = None

    def __call__(self) -> HostCapacity:
        with self._lock:
            now = time.monotonic()
            if self._seen is None or now - self._seen[0] >= self._ttl_s:
                read = ray_host_capacity(self._address, engine=self._engine, gguf_models=self._gguf_models)
                self._seen = (now, read)
            return self._seen[1]


def _asked(options: dict[str, Any]) -> str:
    return ", ".join(f"{key}={value:g}" for key, value in _needs(options).items())


class RayPlacement:
    """Starts, watches and stops replicas as actors on the Ray cluster at ``address``.

    ``state_dir`` holds the heartbeat (on this host, where the placing process runs).
    """

    def __init__(
        self, address: str, state_dir: Path, *, schedule_timeout_s: float = SCHEDULE_TIMEOUT_S
    ) -> None:
        self._address = address
        self._state_dir = state_dir
        self._schedule_timeout_s = schedule_timeout_s
        self._actors: dict[str, Any] = {}
        self._handles: dict[str, list[ReplicaHandle]] = {}
        self._nodes: dict[str, str] = {}
        self._lock = threading.Lock()
        self._counter = 0

    def start(self, spec: ReplicaSpec, name: str, *, deployment: str = "") -> ReplicaHandle:
        """Place one replica called ``name`` on a node with room and return once it answers."""
        engine = engine_for(spec.engine)
        if engine.command(spec.on_port(1)) is None:
            # An upstream runs nothing anywhere: it is reached at its own address, as locally.
            handle = ReplicaHandle(
                name=name, base_url=engine.base_url(spec), deployment=deployment, spec=spec
            )
            self._wait_healthy(handle, None, engine.start_timeout_s)
            return self._hold(handle, None)
        connect(self._address)
        options = resources_for(spec)
        if not _some_node_holds(options):
            # No live node could ever hold it (its GPU type's node was lost, say): say so now
            # rather than wait out the schedule timeout; the next attempt asks again.
            raise CapacityUnavailable(
                f"waiting for capacity: no live node of the Ray cluster has {_asked(options)} "
                f"for replica {name}; its nodes have: {_live_nodes()}"
            )
        free = _free()
        if not _fits(_needs(options), free):
            # Taken by other replicas: an actor would only queue, holding the caller. The
            # reconciler asks again on its next pass, and the deployment says it waits.
            raise CapacityUnavailable(
                f"waiting for capacity: the Ray cluster has no room for replica {name} "
                f"({_asked(options)}) now; free: {_asked_free(free)}"
            )
        token = secrets.token_urlsafe(32)
        actor_class = ray.remote(max_restarts=0, max_task_retries=0)(ReplicaSupervisor)
        actor: Any = actor_class.options(
            name=name, scheduling_strategy="SPREAD", runtime_env=SUPERVISOR_RUNTIME_ENV, **options
        ).remote(msgspec.msgpack.encode(spec), token, name)
        try:
            url, pid, node = ray.get(actor.where.remote(), timeout=self._schedule_timeout_s)
        except GetTimeoutError:
            _kill(actor)
            free = _free()
            raise CapacityUnavailable(
                f"waiting for capacity: no node of the Ray cluster had room for replica {name} "
                f"({_asked(options)}) within {self._schedule_timeout_s:.0f} s; free now: "
                f"{_asked_free(free)}"
            ) from None
        except RayError as exc:
            _kill(actor)
            raise PlacementError(f"replica {name} could not start on the Ray cluster: {exc}") from None
        handle = ReplicaHandle(
            name=name, base_url=url, pid=pid, deployment=deployment, spec=spec, token=token
        )
        self._wait_healthy(handle, actor, engine.start_timeout_s)
        with self._lock:
            self._nodes[name] = node
        return self._hold(handle, actor)

    def _hold(self, handle: ReplicaHandle, actor: Any) -> ReplicaHandle:
        with self._lock:
            if actor is not None:
                self._actors[handle.name] = actor
            self._handles.setdefault(handle.deployment, []).append(handle)
        return handle

    def has_gpus(self) -> bool:
        """Whether any live node of the cluster has a GPU (vLLM replicas can run there)."""
        return cluster_capacity(self._address).total.get("GPU", 0.0) > 0

    def node_of(self, handle: ReplicaHandle) -> str | None:
        """The id of the Ray node ``handle``'s replica runs on (None for an upstream)."""
        with self._lock:
            return self._nodes.get(handle.name)

    def _wait_healthy(self, handle: ReplicaHandle, actor: Any, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        path = engine_for(handle.spec.engine).health_path if handle.spec else "/health"
        while not _answers(handle, path):
            exited = actor is not None and _exit_code(actor) is not None
            if exited or time.monotonic() > deadline:
                why = "exited" if exited else f"did not answer /health within {timeout_s:.0f} s"
                if actor is not None:
                    log.warning("replica %s %s; its log ended: %s", handle.name, why, _tail(actor))
                    _stop_actor(actor)
                raise PlacementError(f"replica {handle.name} {why}")
            time.sleep(HEALTH_POLL_S)

    def start_many(self, deployment: str, spec: ReplicaSpec, count: int) -> list[ReplicaHandle]:
        """Start ``count`` replicas of ``spec`` for ``deployment``; all start or none stays."""
        return start_all(self, spec, (self._next_name(deployment) for _ in range(count)), deployment)

    def _next_name(self, deployment: str) -> str:
        with self._lock:
            self._counter += 1
            # Actor names are cluster-wide: another placing process must not reuse one.
            return f"{deployment or 'replica'}-r{self._counter}-{secrets.token_hex(3)}"

    def replicas(self, deployment: str) -> list[ReplicaHandle]:
        """The replicas this placement holds for ``deployment``, in start order."""
        with self._lock:
            return list(self._handles.get(deployment, []))

    def alive(self, handle: ReplicaHandle) -> bool:
        """Whether the replica's actor lives and its process runs (an upstream: whether it answers).

        A node slow to answer is given the benefit of the doubt: Ray declares a lost node's
        actors dead once its health checks fail, and only that verdict counts.
        """
        with self._lock:
            actor = self._actors.get(handle.name)
        if actor is None:
            return handle.pid is None and _answers(handle, "/v1/models")
        try:
            return ray.get(actor.exit_code.remote(), timeout=ALIVE_TIMEOUT_S) is None
        except GetTimeoutError:
            return True
        except RayActorError:
            return False

    def dead(self, deployment: str) -> list[ReplicaHandle]:
        """The replicas of ``deployment`` that are gone; each is marked unhealthy."""
        gone = [handle for handle in self.replicas(deployment) if not self.alive(handle)]
        for handle in gone:
            handle.healthy = False
        return gone

    def replace(self, handle: ReplicaHandle) -> ReplicaHandle:
        """Stop what is left of ``handle`` and place a fresh replica of the same spec."""
        if handle.spec is None:
            raise PlacementError(f"replica {handle.name} has no spec to start again from")
        self.stop(handle)
        return self.start(handle.spec, self._next_name(handle.deployment), deployment=handle.deployment)

    def stop(self, handle: ReplicaHandle) -> None:
        """Stop the replica and its actor, and forget it; a dead one's log end is quoted first."""
        handle.healthy = False
        with self._lock:
            held = self._handles.get(handle.deployment, [])
            if handle in held:
                held.remove(handle)
            actor = self._actors.pop(handle.name, None)
            self._nodes.pop(handle.name, None)
        if actor is not None:
            if _exit_code(actor) is not None:
                log.warning("replica %s exited; its log ended: %s", handle.name, _tail(actor))
            _stop_actor(actor)

    def stop_deployment(self, deployment: str) -> None:
        """Stop every replica of ``deployment``."""
        for handle in self.replicas(deployment):
            self.stop(handle)

    def stop_all(self) -> None:
        """Stop every replica this placement started: all are asked at once, then each actor goes."""
        with self._lock:
            actors = list(self._actors.values())
            self._actors.clear()
            self._handles.clear()
            self._nodes.clear()
        asked = [actor.stop.remote() for actor in actors]
        with contextlib.suppress(RayError):
            ray.wait(asked, num_returns=len(asked), timeout=STOP_GRACE_S + ALIVE_TIMEOUT_S)
        for actor in actors:
            _kill(actor)

    def sweep(self) -> None:
        """Nothing to remove here: a replica's log lives on its node and goes with its actor,
        and a previous process's actors went with it (they are not detached)."""

    def heartbeat(self) -> None:
        """Record that this placement's replicas were seen now."""
        private_dir(self._state_dir)
        (self._state_dir / HEARTBEAT).touch()

    def last_heartbeat(self) -> datetime | None:
        """When a placement over this folder last saw its replicas (None if never)."""
        try:
            return datetime.fromtimestamp((self._state_dir / HEARTBEAT).stat().st_mtime, UTC)
        except FileNotFoundError:
            return None


def _needs(options: dict[str, Any]) -> dict[str, float]:
    needs = {"CPU": float(options["num_cpus"]), "GPU": float(options["num_gpus"]), **options["resources"]}
    if "memory" in options:
        needs["memory"] = float(options["memory"])
    return {key: value for key, value in needs.items() if value}


def _live() -> list[dict[str, float]]:
    nodes = ray.nodes()  # type: ignore[no-untyped-call]
    return [{k: float(v) for k, v in n.get("Resources", {}).items()} for n in nodes if n.get("Alive")]


def _fits(needs: dict[str, float], resources: dict[str, float]) -> bool:
    return all(resources.get(key, 0.0) >= value for key, value in needs.items())


def _some_node_holds(options: dict[str, Any]) -> bool:
    """Whether one live node has, in all, what the replica asks (free or not)."""
    needs = _needs(options)
    return any(_fits(needs, node) for node in _live())


def _live_nodes() -> str:
    shown = []
    for node in _live():
        mine = {
            k: v
            for k, v in node.items()
            if k in ("CPU", "GPU") or k.startswith((GPU_TYPE_PREFIX, REGION_PREFIX))
        }
        shown.append("{" + ", ".join(f"{k}={v:g}" for k, v in sorted(mine.items())) + "}")
    return " ".join(shown) or "none"


def _asked_free(free: dict[str, float]) -> str:
    shown = {k: v for k, v in free.items() if not k.startswith("node:") and "object_store" not in k}
    return ", ".join(f"{key}={value:g}" for key, value in sorted(shown.items())) or "nothing"


def _answers(handle: ReplicaHandle, path: str) -> bool:
    try:
        return httpx.get(f"{handle.base_url}{path}", headers=handle.headers, timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


def _exit_code(actor: Any) -> int | None:
    """The replica's exit status (None while it runs); a dead actor counts as exited (-1)."""
    try:
        code = ray.get(actor.exit_code.remote(), timeout=ALIVE_TIMEOUT_S)
    except GetTimeoutError:
        return None
    except RayActorError:
        return -1
    return None if code is None else int(code)


def _tail(actor: Any) -> str:
    try:
        return str(ray.get(actor.tail.remote(), timeout=ALIVE_TIMEOUT_S))
    except RayError:
        return "(its node is gone)"


def _stop_actor(actor: Any) -> None:
    # Already dead, or its node is gone: the lifeline takes the replica with it.
    with contextlib.suppress(RayError):
        ray.get(actor.stop.remote(), timeout=STOP_GRACE_S + ALIVE_TIMEOUT_S)
    _kill(actor)


def _kill(actor: Any) -> None:
    with contextlib.suppress(RayError, ValueError):  # already gone
        ray.kill(actor)
