"""The Ray runner: long-lived worker actors, one per GPU (or CPU workers where there is no GPU).

The only module of the project that imports Ray. Each actor builds its worker context once (library,
probe, an LRU of expert weights) and runs one unit at a time; the driver keeps ``UNITS_PER_WORKER`` units
in flight per actor (the next one waits in the actor's queue, so a worker does not sit idle while its
last result travels back and the driver commits it) and takes results in completion order with
``ray.wait``. Each unit is still its own call, result and commit. A worker whose process dies is
restarted by Ray (``max_restarts=-1``); its in-flight units come back as ``lost_worker`` and are
resubmitted. Units write their own parts to the store (deterministic keys), so a unit re-run after a
worker death rewrites the same objects.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from typing import Any, Callable

import ray
from ray.exceptions import ActorDiedError, ActorUnavailableError, RayActorError, RayTaskError

from orchestrator.commit import RunRecorder
from orchestrator.runners import UnitOutcome, execute_unit
from orchestrator.units import WorkUnit

log = logging.getLogger(__name__)

RESTART_WAIT_S = 60.0  # how long a restarting worker may take before it is replaced
UNITS_PER_WORKER = 2  # units in flight per actor: one running, one queued behind it


@dataclass(frozen=True)
class WorkerSpec:
    """How to build a worker: a picklable factory of (context, recorder), and its resources."""

    make_context_and_recorder: Callable[[], tuple[Any, RunRecorder]]
    num_gpus: float = 0.0
    num_cpus: float = 1.0


@ray.remote(max_restarts=-1, max_task_retries=0)
class SweepWorker:
    def __init__(self, spec: WorkerSpec) -> None:
        self._ctx, self._recorder = spec.make_context_and_recorder()

    def run(self, unit: WorkUnit) -> tuple[list[str], float]:
        return execute_unit(unit, self._ctx, self._recorder)

    def info(self) -> dict:
        return {"pid": os.getpid(), "gpu_ids": [str(g) for g in ray.get_gpu_ids()], "node": ray.get_runtime_context().get_node_id()}


def init_ray(address: str, *, num_cpus: int | None = None, num_gpus: int | None = None) -> None:
    """Connect to Ray. ``local`` starts a private single-node Ray (never attaches to a stranger's cluster)."""
    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    kwargs: dict[str, Any] = dict(include_dashboard=False, log_to_driver=False)
    if address == "local":
        kwargs.update(address="local", num_cpus=num_cpus, num_gpus=num_gpus)
    else:
        kwargs.update(address=address)
    ray.init(**kwargs)


class RayRunner:
    """Spreads units over ``n_workers`` actors built from ``spec``."""

    def __init__(self, spec: WorkerSpec, n_workers: int, *, units_per_worker: int = UNITS_PER_WORKER) -> None:
        if n_workers < 1 or units_per_worker < 1:
            raise ValueError("a Ray runner needs at least one worker and one unit per worker")
        self._spec = spec
        self._actors = [self._new_actor() for _ in range(n_workers)]
        self._depth = units_per_worker
        self._load = [0] * n_workers  # units in flight per actor slot
        self._in_flight: dict[ray.ObjectRef, tuple[WorkUnit, int, float, Any]] = {}

    def _new_actor(self) -> Any:
        return SweepWorker.options(num_gpus=self._spec.num_gpus, num_cpus=self._spec.num_cpus).remote(self._spec)

    @property
    def actors(self) -> list[Any]:
        return list(self._actors)

    @property
    def capacity(self) -> int:
        return len(self._actors) * self._depth

    @property
    def pending(self) -> int:
        return len(self._in_flight)

    def submit(self, unit: WorkUnit) -> None:
        slot = min(range(len(self._actors)), key=self._load.__getitem__)  # the least busy actor
        actor = self._actors[slot]
        ref = actor.run.remote(unit)
        self._load[slot] += 1
        self._in_flight[ref] = (unit, slot, time.perf_counter(), actor)

    def next_outcome(self) -> UnitOutcome:
        ready, _ = ray.wait(list(self._in_flight), num_returns=1)
        ref = ready[0]
        unit, slot, start, actor = self._in_flight.pop(ref)
        self._load[slot] -= 1
        try:
            keys, seconds = ray.get(ref)
        except (ActorUnavailableError, ActorDiedError, RayActorError) as exc:
            if actor is not self._actors[slot]:
                pass  # a unit queued on an actor already replaced (its other unit reported the loss first)
            elif isinstance(exc, ActorDiedError):
                log.warning("worker %d died; starting a new one", slot)
                self._actors[slot] = self._new_actor()
            else:
                self._await_restart(slot)
            return UnitOutcome(unit, None, exc, time.perf_counter() - start, lost_worker=True)
        except RayTaskError as exc:
            cause = exc.cause if isinstance(exc.cause, BaseException) else exc
            return UnitOutcome(unit, None, cause, time.perf_counter() - start)
        return UnitOutcome(unit, keys, None, seconds)

    def _await_restart(self, slot: int) -> None:
        """Wait (bounded) until Ray has restarted the worker in ``slot``, else replace it.

        Without this the driver resubmits to an actor that is still restarting, gets
        ``ActorUnavailableError`` at once, and burns the unit's worker-loss allowance in a spin.
        """
        deadline = time.monotonic() + RESTART_WAIT_S
        while time.monotonic() < deadline:
            try:
                ray.get(self._actors[slot].info.remote(), timeout=max(0.1, deadline - time.monotonic()))
                return
            except ActorUnavailableError:
                time.sleep(0.2)
            except (ActorDiedError, RayActorError, ray.exceptions.GetTimeoutError):
                break
        log.warning("worker %d did not come back within %.0f s; starting a new one", slot, RESTART_WAIT_S)
        ray.kill(self._actors[slot], no_restart=True)
        self._actors[slot] = self._new_actor()

    def close(self) -> None:
        for actor in self._actors:
            ray.kill(actor, no_restart=True)
        self._actors = []
        self._load = []


def cluster_workers(workers: int | None, cpus_per_worker: float) -> tuple[int, float]:
    """(number of worker actors, GPUs per actor): one per GPU when the cluster has GPUs, else CPU workers."""
    resources = ray.cluster_resources()
    gpus = int(resources.get("GPU", 0))
    if gpus:
        return (workers or gpus), 1.0
    cpus = resources.get("CPU", 1)
    return (workers or max(1, int(cpus // cpus_per_worker))), 0.0
