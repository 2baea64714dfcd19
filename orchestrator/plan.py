"""Planning is pure: (config, library tasks) → work units per stage. No I/O, no Ray.

Stages run in this order: ``experts`` → ``heads`` and ``embeddings`` → ``distances`` →
``transfer_init`` → ``transfer``. A unit's key covers its fields and a digest of the config sections it
depends on, so changing (say) the heads' learning rate re-plans only heads units.

Experts and heads may be chosen by rule (``experts.rules``, the meta-tasks of ``report.meta_tasks``,
``heads.pairs: meta_tasks``); ``orchestrator/meta_tasks.py`` resolves the rules, the same way for the
report.

One exception to "planned up front": in ``transfer.mode: nearest`` the ``transfer`` units depend on the
committed distances, so ``plan`` leaves that stage empty (``Plan.transfer_deferred``) and the sweep
calls ``plan_transfer`` with the committed ``d_asym`` once the distances stage is done (still pure:
same config and same distances, same units and keys).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from orchestrator.config import SweepConfig
from orchestrator.meta_tasks import MetaTask, meta_task_trainings, resolve, rule_experts
from orchestrator.stages.distances import ComputeDistances
from orchestrator.stages.embeddings import EmbedDomain, EmbedTask
from orchestrator.stages.experts import RegisterGeneric, TrainExpert, expert_id_for, generic_expert_id
from orchestrator.stages.heads import FitHeads
from orchestrator.stages.transfer import FineTuneFromInit, FineTuneFromSource
from orchestrator.transfer_pairs import Pair, nearest_pairs, nearest_roles, sources_and_targets, static_pairs
from orchestrator.units import WorkUnit, digest
from tasks.errors import TaskSweepInputError
from tasks.spec import TaskSpec

STAGES = ("experts", "heads", "embeddings", "distances", "transfer_init", "transfer")


@dataclass
class Plan:
    tasks: list[TaskSpec]
    experts: list[str]  # expert ids, generic first
    stages: dict[str, list[WorkUnit]] = field(default_factory=dict)
    transfer_deferred: bool = False  # transfer.mode nearest: call plan_transfer after the distances
    digests: dict[str, str] = field(default_factory=dict)
    meta_tasks: list[MetaTask] = field(default_factory=list)  # report.meta_tasks resolved against this run
    notes: list[str] = field(default_factory=list)  # where a rule found less than it asked for

    def counts(self) -> dict[str, int]:
        return {stage: len(self.stages.get(stage, [])) for stage in STAGES}


def select_tasks(config: SweepConfig, tasks: list[TaskSpec]) -> list[TaskSpec]:
    """The library tasks the sweep covers, in library order."""
    sel = config.tasks
    chosen = [t for t in tasks if sel.sources == "all" or t.source in sel.sources]
    if sel.include:
        known = {t.task_id for t in chosen}
        missing = [t for t in sel.include if t not in known]
        if missing:
            raise TaskSweepInputError(
                f"tasks.include names {len(missing)} task(s) not in the library (or not in tasks.sources): "
                f"{missing[:5]}; list the library's task ids with pyarrow.dataset.dataset('<results>/<run>/tasks')"
            )
        wanted = set(sel.include)
        chosen = [t for t in chosen if t.task_id in wanted]
    if sel.sample is not None and sel.sample < len(chosen):
        keep = set(random.Random(sel.seed).sample([t.task_id for t in chosen], sel.sample))
        chosen = [t for t in chosen if t.task_id in keep]
    if not chosen:
        raise TaskSweepInputError("the task selection is empty: check tasks.sources / tasks.include / tasks.sample")
    return chosen


def expert_trainings(config: SweepConfig, tasks: list[TaskSpec],
                     notes: list[str] | None = None) -> dict[str, tuple[str, ...]]:
    """Expert id → the task ids it is fine-tuned on: ``train_on`` and ``per_task`` (capped by
    ``max_experts``), then ``experts.rules``, then the experts the meta-tasks add, then transfer sources."""
    by_id = {t.task_id: t for t in tasks}
    out: dict[str, tuple[str, ...]] = {}
    entries = list(config.experts.train_on)
    if config.experts.per_task:
        entries += [t.task_id for t in tasks]
    for entry in entries:
        if entry.startswith("source:"):
            members = tuple(t.task_id for t in tasks if t.source == entry.split(":", 1)[1])
            if not members:
                raise TaskSweepInputError(f"experts.train_on: {entry!r} matches no selected task")
            if any(by_id[m].is_binary for m in members):
                raise TaskSweepInputError(
                    f"experts.train_on: {entry!r} is a group of binary tasks; groups must be multi-class "
                    "(iNat/CUB) tasks, whose classes are pooled; name single binary tasks instead"
                )
        elif entry in by_id:
            members = (entry,)
        else:
            raise TaskSweepInputError(f"experts.train_on: {entry!r} is neither a selected task id nor source:<name>")
        out.setdefault(expert_id_for(entry), members)
    if config.experts.max_experts is not None:
        out = dict(list(out.items())[: config.experts.max_experts])
    for rule in config.experts.rules:
        for eid, members in rule_experts(rule, tasks, notes=notes).items():
            out.setdefault(eid, members)
    for meta in config.report.meta_tasks:
        for eid, members in meta_task_trainings(meta, tasks, notes).items():
            out.setdefault(eid, members)
    for source in sources_and_targets(config.transfer, tasks)[0]:  # transfer sources need their own expert
        out.setdefault(expert_id_for(source), (source,))
    return out


def plan(config: SweepConfig, library_tasks: list[TaskSpec]) -> Plan:
    """Every unit of the sweep, per stage."""
    tasks = select_tasks(config, library_tasks)
    notes: list[str] = []
    trainings = expert_trainings(config, tasks, notes)
    generic = generic_expert_id(config.embeddings.probe) if config.experts.generic else None
    experts = ([generic] if generic else []) + list(trainings)
    if not experts:
        raise TaskSweepInputError("no experts: set experts.generic: true or name experts.train_on")
    metas = [resolve(m, tasks, trainings, generic, notes) for m in config.report.meta_tasks]
    probe_digest = digest([config.embeddings.probe, str(config.embeddings.probe_weights), config.runtime.image_size])
    expert_digest = digest([probe_digest, config.experts.model_dump(mode="json")])
    heads_digest = digest([expert_digest, config.heads.model_dump(mode="json")])
    embed_digest = digest([probe_digest, config.embeddings.model_dump(mode="json")])
    result = Plan(tasks=tasks, experts=experts, meta_tasks=metas, notes=list(dict.fromkeys(notes)))
    result.stages["experts"] = [RegisterGeneric(probe_digest, e) for e in experts if e not in trainings] + [
        TrainExpert(expert_digest, eid, members) for eid, members in trainings.items()
    ]
    result.stages["heads"] = [
        FitHeads(heads_digest, eid, chunk) for eid, chunk in head_units(config, tasks, experts, metas)
    ]
    embeds: list[WorkUnit] = [EmbedTask(embed_digest, t.task_id, m) for m in config.embeddings.methods for t in tasks]
    if config.embeddings.domain:
        embeds += [EmbedDomain(embed_digest, chunk) for chunk in source_chunks(tasks, config.heads.task_chunk)]
    result.stages["embeddings"] = embeds
    dist_digest = digest([embed_digest, config.distances.model_dump(mode="json")])
    task_ids = tuple(t.task_id for t in tasks)
    result.stages["distances"] = [ComputeDistances(dist_digest, m, task_ids) for m in config.embeddings.methods]
    result.digests = {"init": digest([probe_digest, config.transfer.training_fields()]),
                      "transfer": digest([expert_digest, probe_digest, config.transfer.training_fields(),
                                          dist_digest if config.transfer.mode == "nearest" else ""])}
    _, targets = sources_and_targets(config.transfer, tasks)
    result.stages["transfer_init"] = [init_unit(config, result, b, s) for b in targets for s in config.transfer.seeds]
    result.transfer_deferred = config.transfer.mode == "nearest"
    if config.transfer.mode == "nearest":
        _check_nearest(config)
        result.stages["transfer"] = []
    else:
        result.stages["transfer"] = transfer_units(config, result, static_pairs(config.transfer, tasks))
    return result


def init_unit(config: SweepConfig, the_plan: Plan, target: str, seed: int) -> FineTuneFromInit:
    return FineTuneFromInit(the_plan.digests["init"], generic_expert_id(config.embeddings.probe), target, seed)


def transfer_units(config: SweepConfig, the_plan: Plan, pairs: list[Pair]) -> list[WorkUnit]:
    """One from-source unit per (pair, seed), each joined to the shared from-init unit of (target, seed)."""
    return [FineTuneFromSource(the_plan.digests["transfer"], p.source, p.target, s, p.selection,
                               init_unit(config, the_plan, p.target, s).key)
            for p in pairs for s in config.transfer.seeds]


def plan_transfer(config: SweepConfig, the_plan: Plan, d_asym: dict[tuple[str, str], float]) -> list[WorkUnit]:
    """The ``transfer`` units of ``nearest`` mode, given ``d_asym[(source, target)]`` (missing: ranked last)."""
    targets, candidates = nearest_roles(config.transfer, the_plan.tasks)
    pairs = nearest_pairs(targets, candidates, d_asym, k=config.transfer.k, seed=config.transfer.selection_seed)
    return transfer_units(config, the_plan, pairs)


def transfer_method(config: SweepConfig) -> str:
    """The Fisher method whose ``d_asym`` ranks the nearest sources."""
    return config.transfer.method or config.embeddings.methods[0]


def _check_nearest(config: SweepConfig) -> None:
    if transfer_method(config) not in config.embeddings.methods:
        raise TaskSweepInputError(f"transfer.method {config.transfer.method!r} is not in embeddings.methods "
                                  f"{config.embeddings.methods}")
    if "asymmetric" not in config.distances.kinds:
        raise TaskSweepInputError("transfer.mode nearest ranks by d_asym: add asymmetric to distances.kinds")


def head_units(config: SweepConfig, tasks: list[TaskSpec], experts: list[str],
               metas: list[MetaTask]) -> list[tuple[str, tuple[str, ...]]]:
    """(expert, task chunk) pairs: tasks sharing one image group go together (one feature pass)."""
    pairs = config.heads.pairs
    if pairs == "all":
        wanted = {e: [t.task_id for t in tasks] for e in experts}
    elif pairs == "meta_tasks":
        chosen: dict[str, set[str]] = {e: set() for e in experts}
        for meta in metas:
            for e in meta.experts:
                chosen[e].update(meta.tasks)
        wanted = {e: [t.task_id for t in tasks if t.task_id in chosen[e]] for e in experts}
    else:
        known_tasks = {t.task_id for t in tasks}
        bad = [(e, t) for e, t in pairs if e not in experts or t not in known_tasks]
        if bad:
            raise TaskSweepInputError(f"heads.pairs names unknown (expert, task) pairs: {bad[:5]}; experts are {experts}")
        wanted = {e: [t for pe, t in pairs if pe == e] for e in experts}
    by_id = {t.task_id: t for t in tasks}
    out = []
    for expert in experts:
        chosen = [by_id[t] for t in wanted[expert]]
        out += [(expert, chunk) for chunk in source_chunks(chosen, config.heads.task_chunk)]
    return out


def source_chunks(tasks: list[TaskSpec], chunk: int) -> list[tuple[str, ...]]:
    """Group tasks by source; a source whose tasks share one image group stays whole (its images are
    forwarded once), other sources are cut into chunks of at most ``chunk`` tasks."""
    by_source: dict[str, list[TaskSpec]] = {}
    for t in tasks:
        by_source.setdefault(t.source, []).append(t)
    out = []
    for members in by_source.values():
        shared = len({t.image_group for t in members}) == 1 and len(members) > 1
        size = len(members) if shared else chunk
        out += [tuple(t.task_id for t in members[i : i + size]) for i in range(0, len(members), size)]
    return out
