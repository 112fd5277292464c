"""The composition root: every kind of process is put together here, from ``Settings``.

``serve`` (the API and every worker in one process, the embedded default), ``api`` (one
API process of a cluster), ``worker`` (named workers) and the operator commands each ask
this module for what they run, and nothing else in the product opens a database, a store
or a client. ``opened_core`` opens what every process shares (the event store, the views,
the state that replay never touches) and builds the application services over them;
``build_workers`` and ``build_api`` hand each part exactly what it uses. Everything is
closed in reverse order on the way out.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from litestar import Litestar

from modelyard.adapters.concurrency.limiter import (
    ConcurrencyLimiter,
    InProcessConcurrency,
    PostgresConcurrency,
)
from modelyard.adapters.engines.capacity import host_capacity, serving_engine
from modelyard.adapters.engines.live import read_replicas
from modelyard.adapters.engines.models import PlacementError, gguf_paths, replica_spec
from modelyard.adapters.engines.upstream import Upstream, UpstreamClient, operator_upstreams
from modelyard.adapters.eventlog.partitions import TopicPartitions
from modelyard.adapters.eventlog.sources import EventSource, KafkaSource, NotificationLogSource
from modelyard.adapters.eventstore.env import open_store
from modelyard.adapters.placement.base import Placement
from modelyard.adapters.placement.local import LocalPlacement
from modelyard.adapters.ratelimit.limiter import InProcessRateLimiter, PostgresRateLimiter, RateLimiter
from modelyard.adapters.state.db import open_state
from modelyard.adapters.views.db import PostgresViews, ViewDatabase, open_views, private_file
from modelyard.adapters.views.follow import ViewsFollower, log_partition
from modelyard.adapters.webhooks.dead_letters import KafkaDeadLetters
from modelyard.adapters.webhooks.destinations import Network, allowed_networks
from modelyard.api.access.actions import Access, ServedBy
from modelyard.api.app import Edge, create_app
from modelyard.api.auth import KeyCache
from modelyard.api.deployments.actions import Deployments
from modelyard.api.deployments.metrics import Observability
from modelyard.api.deployments.schemas import Engine
from modelyard.api.finance.actions import Finance
from modelyard.api.gateway.calls import Gateway
from modelyard.api.gateway.coldstart import ColdStarter
from modelyard.api.gateway.forwarder import Forwarder
from modelyard.api.gateway.media import Media
from modelyard.api.gateway.usage import UsageWriter
from modelyard.api.health.controller import WorkerHealth, WorkersHealth
from modelyard.api.instances.actions import Instances
from modelyard.api.low_balance.actions import LowBalance
from modelyard.api.metrics import ApiMetrics
from modelyard.api.routing.router import ChatRouter
from modelyard.api.uploads.actions import Uploads
from modelyard.api.webhooks.actions import Webhooks
from modelyard.domain.catalog.fit import HostCapacity
from modelyard.domain.catalog.models import Plan
from modelyard.domain.catalog.plans import Limits, Quota, plan_limits, plan_quotas
from modelyard.domain.deployments.autoscaling import Tuning
from modelyard.domain.deployments.low_balance_service import LowBalanceService
from modelyard.domain.services import Services
from modelyard.domain.shared.errors import InvalidAmount
from modelyard.domain.shared.money import parse_usd
from modelyard.domain.shared.store import Store
from modelyard.projections.registry import all_projections
from modelyard.settings import Settings, SettingsError, StoreKind
from modelyard.workers.autoscaler import Autoscaler, AutoscalerWorker
from modelyard.workers.balance_guard import BalanceGuard, BalanceGuardWorker
from modelyard.workers.janitor import Janitor, JanitorWorker
from modelyard.workers.loop import BackgroundLoop
from modelyard.workers.meter import Meter, MeterWorker
from modelyard.workers.projection_runner import ProjectionRunner, log_position
from modelyard.workers.reconciler import Reconciler, ReconcilerWorker
from modelyard.workers.relay import RelayWorker
from modelyard.workers.sla import SlaEvaluator, SlaWorker
from modelyard.workers.views import ViewsWorker
from modelyard.workers.webhook_delivery import DeliveryEngine, Finished, parse_schedule
from modelyard.workers.webhooks import Notices, StoredLogPosition, WebhookDispatcher

WORKERS = (
    "relay", "views", "meter", "reconciler", "janitor", "autoscaler", "sla", "webhooks", "balance_guard",
)  # fmt: skip
# How stale the workers' health on /health may be (see _health_of).
HEALTH_TTL_S = 0.5
# The Kafka consumer groups every views worker and every webhook dispatcher of a cluster
# share, each named per events topic (consumer_group).
VIEWS_GROUP = "modelyard-views"
WEBHOOKS_GROUP = "modelyard-webhooks"


@dataclass(frozen=True)
class Core:
    """What every process shares: settings, the store, the views, and the services over them."""

    settings: Settings
    store: Store
    views: ViewDatabase
    # What replay never touches: idempotency records, shown-once secrets, the relay's position.
    state: ViewDatabase
    services: Services


def _quotas(settings: Settings) -> dict[Plan, Quota]:
    try:
        return plan_quotas(settings.quotas)
    except ValueError as exc:
        raise SettingsError(f"MODELYARD_QUOTAS={settings.quotas!r} is not valid: {exc}") from None


def _host(settings: Settings) -> HostCapacity | Callable[[], HostCapacity]:
    # What placement can start here: deployments it could never serve are refused at once.
    if settings.placement == "ray":
        return _ray_host(settings)
    try:
        return host_capacity(
            engine=settings.engine,
            gguf_models=settings.gguf_models,
            gpu_types=settings.gpu_types,
            regions=settings.regions,
        )
    except ValueError as exc:
        raise SettingsError(
            f"MODELYARD_GPU_TYPES, MODELYARD_REGIONS or MODELYARD_GGUF_MODELS: {exc}"
        ) from None


def _ray_host(settings: Settings) -> Callable[[], HostCapacity]:
    # Imported here: ray is an optional extra, needed only when replicas run on a Ray cluster.
    from modelyard.adapters.placement.ray import RayCapacity

    # Read on each request (briefly cached): the cluster's nodes come and go, GPUs are taken.
    capacity = RayCapacity(settings.ray_address, engine=settings.engine, gguf_models=settings.gguf_models)
    try:
        capacity()  # an unreachable cluster stops the start, with the reason
    except PlacementError as exc:
        raise SettingsError(f"MODELYARD_RAY_ADDRESS={settings.ray_address!r}: {exc}") from None
    return capacity


def _placement(settings: Settings) -> tuple[Placement, Callable[[], bool] | None]:
    """Where replicas run (processes on this host, or actors on the Ray cluster), and whether
    its nodes have GPUs for vLLM replicas (None: whether this host has one)."""
    if settings.placement == "ray":
        from modelyard.adapters.placement.ray import RayPlacement

        cluster = RayPlacement(settings.ray_address, Path(settings.data_dir) / "replicas")
        return cluster, cluster.has_gpus
    return LocalPlacement(Path(settings.data_dir) / "replicas"), None


@contextmanager
def opened_core(settings: Settings) -> Iterator[Core]:
    """Open the store and the views (creating their tables), closed on the way out."""
    quotas = _quotas(settings)
    host = _host(settings)
    with ExitStack() as stack:
        if settings.store is StoreKind.SQLITE:
            # The data folder and every database in it are the owner's alone (0700/0600).
            private_file(settings.sqlite_path)
        store = open_store(settings)
        stack.callback(store.close)
        views = open_views(settings)
        stack.callback(views.close)
        views.ensure([statement for p in all_projections() for statement in p.schema])
        state = open_state(settings)
        stack.callback(state.close)
        yield Core(
            settings=settings,
            store=store,
            views=views,
            state=state,
            services=Services.over(store, quotas, host),
        )


def consumer_group(name: str, settings: Settings) -> str:
    """The Kafka consumer group ``name`` of this cluster: one per events topic, so clusters
    sharing a broker never rebalance each other. One views group for every topic let a new
    cluster's views worker join, take the group's leader's assignment for a topic that
    leader did not know, and keep no partition."""
    return f"{name}.{settings.kafka_topic}"


def views_source(core: Core) -> EventSource:
    """Kafka in cluster mode, the store's own log (after the views' position) in the embedded default."""
    settings = core.settings
    if settings.uses_kafka:
        return KafkaSource(
            settings.kafka_bootstrap, settings.kafka_topic, consumer_group(VIEWS_GROUP, settings)
        )
    return NotificationLogSource(core.store.recorder, start_after=log_position(core.views, all_projections()))


def views_runner(core: Core) -> ProjectionRunner:
    """A runner of every projection over this process's source (opens the source)."""
    return ProjectionRunner(core.views, views_source(core), all_projections())


def build_workers(core: Core, names: Sequence[str]) -> list[BackgroundLoop]:
    """The named workers, built without I/O: each opens what it needs when started."""
    settings, services = core.settings, core.services
    built: list[BackgroundLoop] = []
    if "relay" in names and settings.uses_kafka:
        relay = RelayWorker(core.store.recorder, core.state, settings.kafka_bootstrap, settings.kafka_topic)
        built.append(relay)
    if "views" in names:
        built.append(ViewsWorker(lambda: views_runner(core)))
    # The reconciler before the meter: it records the losses of the replicas a previous
    # process left behind before any minute of theirs is metered (and stops after it).
    if "reconciler" in names:
        placement, gpus = _placement(settings)
        reconciler = Reconciler(settings, services.deployments, core.views, placement, cluster_gpu=gpus)
        built.append(ReconcilerWorker(reconciler, placement, catch_up=lambda: catch_up(core)))
    if "meter" in names:
        built.append(MeterWorker(Meter(services.deployments, core.views)))
    if "webhooks" in names:
        built.append(webhook_dispatcher(core))
    if "janitor" in names:
        # The in-process limiter (embedded default) bounds its own memory; PostgreSQL's
        # windows, in the state store, are pruned by the janitor.
        windows = isinstance(core.state, PostgresViews)
        built.append(JanitorWorker(Janitor(core.state, core.views, windows=windows)))
    if "autoscaler" in names:
        tuning = Tuning(
            target_concurrency=settings.autoscale_target_concurrency,
            down_window_s=settings.autoscale_down_window_s,
        )
        autoscaler = Autoscaler(services.deployments, core.views, tuning)
        built.append(AutoscalerWorker(autoscaler, settings.autoscale_interval_s))
    if "sla" in names:
        built.append(SlaWorker(SlaEvaluator(services.deployments, core.views), settings.sla_window_s))
    if "balance_guard" in names:
        guard = BalanceGuard(LowBalanceService(core.store, _quotas(settings)), core.views)
        built.append(BalanceGuardWorker(guard, settings.balance_guard_interval_s))
    return built


@contextmanager
def running(workers: Sequence[BackgroundLoop]) -> Iterator[None]:
    """Start the workers in order and stop them in reverse on the way out."""
    with ExitStack() as stack:
        for worker in workers:
            worker.start()
            stack.callback(worker.stop)
        yield


def _plan_limits(settings: Settings) -> dict[Plan, Limits]:
    try:
        return plan_limits(settings.plan_limits)
    except ValueError as exc:
        raise SettingsError(f"MODELYARD_PLAN_LIMITS={settings.plan_limits!r} is not valid: {exc}") from None


def _served_by(settings: Settings) -> ServedBy:
    """Which engine serves each catalog model on this installation (asked once per model)."""
    gguf = gguf_paths(settings.gguf_models)
    answers: dict[str, tuple[str | None, str | None]] = {}

    def served_by(model_id: str) -> tuple[str | None, str | None]:
        if model_id not in answers:
            try:
                spec = replica_spec(model_id, engine=settings.engine, gguf=gguf, preset="balanced")
                answers[model_id] = (spec.engine, None)
            except PlacementError as exc:
                answers[model_id] = (None, str(exc))
        return answers[model_id]

    return served_by


def _limiter(state: ViewDatabase) -> RateLimiter:
    # The embedded default serves every request from one process: a dict is the truth there.
    return PostgresRateLimiter(state.pool) if isinstance(state, PostgresViews) else InProcessRateLimiter()


def _concurrency(state: ViewDatabase) -> ConcurrencyLimiter:
    # As the rate limiter: leases in PostgreSQL hold across API processes; one process, a dict.
    return PostgresConcurrency(state.pool) if isinstance(state, PostgresViews) else InProcessConcurrency()


def _health_of(workers: Sequence[BackgroundLoop]) -> WorkersHealth:
    # A health route may be probed thousands of times a second; a worker's state changes at
    # most once a step, so an answer up to HEALTH_TTL_S old is as good and costs nothing.
    answered: list[tuple[float, list[WorkerHealth]]] = []

    def health() -> list[WorkerHealth]:
        now = time.monotonic()
        if answered and now - answered[0][0] < HEALTH_TTL_S:
            return answered[0][1]
        found = [
            WorkerHealth(
                name=h.name,
                healthy=h.healthy,
                consecutive_failures=h.consecutive_failures,
                last_error=h.last_error,
            )
            for h in (worker.health() for worker in workers)
        ]
        answered[:] = [(now, found)]
        return found

    return health


def _engine_of(settings: Settings) -> Callable[[str, str], Engine | None]:
    # A deployment shows the engine its replicas run here and its preset's arguments in force.
    gguf = gguf_paths(settings.gguf_models)

    @functools.lru_cache(maxsize=256)
    def engine_of(model: str, preset: str) -> Engine | None:
        found = serving_engine(
            model,
            preset,
            engine=settings.engine,
            gguf=gguf,
            ttft_ms=settings.simulated_ttft_ms,
            tokens_per_s=settings.simulated_tokens_per_s,
        )
        return None if found is None else Engine(name=found[0], arguments=found[1])

    return engine_of


def webhook_networks(settings: Settings) -> tuple[Network, ...]:
    """The internal networks webhooks may be sent to (``MODELYARD_WEBHOOK_ALLOWED_NETWORKS``)."""
    try:
        return allowed_networks(settings.webhook_allowed_networks)
    except ValueError as exc:
        raise SettingsError(f"MODELYARD_WEBHOOK_ALLOWED_NETWORKS is not valid: {exc}") from None


def _notify_default(settings: Settings) -> int:
    """The operator's ``account.credits_low`` threshold (micro-dollars), for accounts without a policy."""
    try:
        return parse_usd(settings.webhook_credits_low_usd)
    except InvalidAmount as exc:
        raise SettingsError(f"MODELYARD_WEBHOOK_CREDITS_LOW_USD is not valid: {exc}") from None


def webhook_dispatcher(core: Core) -> WebhookDispatcher:
    """The webhook dispatcher over this process's source (opened when it starts)."""
    settings = core.settings
    try:
        schedule = parse_schedule(settings.webhook_retry_schedule)
        threshold = parse_usd(settings.webhook_credits_low_usd)
    except (ValueError, InvalidAmount) as exc:
        raise SettingsError(f"a MODELYARD_WEBHOOK_ setting is not valid: {exc}") from None
    networks = webhook_networks(settings)
    dead = KafkaDeadLetters(settings.kafka_bootstrap, settings.kafka_topic) if settings.uses_kafka else None
    stored = None if settings.uses_kafka else StoredLogPosition(core.state)

    def source() -> EventSource:
        if settings.uses_kafka:
            group = consumer_group(WEBHOOKS_GROUP, settings)
            return KafkaSource(settings.kafka_bootstrap, settings.kafka_topic, group)
        assert stored is not None
        return NotificationLogSource(core.store.recorder, start_after=stored.load())

    def engine(finished: Finished) -> DeliveryEngine:
        return DeliveryEngine(
            core.state,
            schedule=schedule,
            timeout_s=settings.webhook_timeout_s,
            allowed=networks,
            concurrency=settings.webhook_concurrency,
            finished=finished,
            dead_letters=dead,
        )

    notices = Notices(core.store, core.views, threshold)
    return WebhookDispatcher(source, notices, core.views, core.state, engine, log_position=stored)


def build_api(core: Core, workers: Sequence[BackgroundLoop] = ()) -> Litestar:
    """The API of this process over the core's services, views and state.

    ``workers`` are the background workers running beside it (``serve``): ``/health`` says
    how they are doing.
    """
    settings = core.settings
    partitions = TopicPartitions(settings.kafka_bootstrap, settings.kafka_topic)
    follower = ViewsFollower(
        core.views,
        [p.name for p in all_projections()],
        partitions.of if settings.uses_kafka else log_partition,
    )
    keys = KeyCache(core.views, core.state)
    forwarder = Forwarder(core.views)
    cold = ColdStarter(core.services.deployments, core.views, forwarder, settings.cold_start_wait_s)
    metrics = ApiMetrics(core.views)
    gateway = Gateway(
        keys,
        forwarder,
        UsageWriter(core.services.usage),
        core.state,
        cold=cold,
        concurrency=_concurrency(core.state),
        metrics=metrics,
    )
    instances = Instances(core.services, core.views, core.state, follower, settings.base_url)
    engine_of = _engine_of(settings)
    deployments = Deployments(
        core.services,
        core.views,
        core.state,
        follower,
        base_url=settings.base_url,
        engine_of=engine_of,
    )
    routing = ChatRouter(
        keys=keys,
        forwarder=gateway.forwarder,
        usage=gateway.usage,
        views=core.views,
        state=core.state,
        operator=_operator_upstreams(settings),
        client=UpstreamClient(settings.upstream_timeout_s),
    )
    webhooks = Webhooks(
        core.services,
        core.views,
        core.state,
        follower,
        allowed=webhook_networks(settings),
        overlap_s=settings.webhook_secret_overlap_s,
    )
    edge = Edge(
        webhooks=webhooks,
        instances=instances,
        gateway=gateway,
        finance=Finance(core.services, core.views, core.store.recorder, engine_of),
        key_cache=keys,
        limiter=_limiter(core.state),
        rate_limit_rpm=settings.rate_limit_rpm,
        workers_health=_health_of(workers),
        deployments=deployments,
        observability=Observability(core.views, read_replicas),
        metrics=metrics,
        routing=routing,
        media=Media(gateway, core.views),
        uploads=Uploads(core.services, core.views, follower, settings.data_dir, settings.max_upload_bytes),
        access=Access(core.services, core.views, core.state, follower, _served_by(settings)),
        plan_limits=_plan_limits(settings),
        low_balance=LowBalance(
            core.services, LowBalanceService(core.store, _quotas(settings)), _notify_default(settings)
        ),
    )
    return create_app(edge)


def _operator_upstreams(settings: Settings) -> list[Upstream]:
    """The operator's upstreams; a list that does not parse stops the process, named."""
    try:
        return operator_upstreams(settings.upstreams)
    except ValueError as exc:
        raise SettingsError(str(exc)) from None


def catch_up(core: Core) -> None:
    """The embedded default has no worker beside the CLI: bring the views up to date here."""
    if core.settings.uses_kafka:
        return
    runner = views_runner(core)
    try:
        runner.run_until_idle()
    finally:
        runner.close()


@contextmanager
def operating(settings: Settings) -> Iterator[Core]:
    """The core of an operator command, its views caught up before and after it acts."""
    with opened_core(settings) as core:
        catch_up(core)
        try:
            yield core
        finally:
            catch_up(core)
