"""Tasks and experts chosen by rule, and the meta-tasks built from them: pure functions, no I/O.

Used by the plan (which experts to train, which heads to fit) and by the report (which rows and
columns make a meta-task), so both resolve a rule to the same tasks. Every choice is independent of
the order the tasks come in: candidates are sorted by id before a seeded shuffle, and the first N of
the shuffle are taken, so a pick of 50 is the start of a pick of 129 with the same pool and seed.
A rule asking for more than the library has takes what there is and says so in ``notes``.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from orchestrator.config import ExpertRule, MetaTaskConfig
from orchestrator.stages.experts import expert_id_for
from tasks.spec import TaskSpec


@dataclass(frozen=True)
class MetaTask:
    """A meta-task resolved against a run: its target tasks and candidate experts (generic included)."""

    name: str
    tasks: tuple[str, ...]
    experts: tuple[str, ...]


def of_sources(tasks: Sequence[TaskSpec], sources: Sequence[str] | str) -> list[TaskSpec]:
    return [t for t in tasks if sources == "all" or t.source in sources]


def shuffled(ids: Sequence[str], seed: int) -> list[str]:
    """The ids sorted, then shuffled by ``seed``: the same order whatever order they came in."""
    out = sorted(ids)
    random.Random(seed).shuffle(out)
    return out


def pick_tasks(tasks: Sequence[TaskSpec], sources: Sequence[str] | str, count: int | None, seed: int, *,
               per_source: bool = False, what: str = "pick", notes: list[str] | None = None) -> list[str]:
    """Task ids of ``sources``: all, or the first ``count`` of a seeded shuffle (``per_source``: an equal
    share of each source present, the remainder to the first sources in name order)."""
    pool = of_sources(tasks, sources)
    if count is None:
        return [t.task_id for t in pool]
    if len(pool) < count and notes is not None:
        notes.append(f"{what}: {len(pool)} task(s) of {sources} in the selection, fewer than the {count} asked"
                     + ("; taking them all" if pool else ""))
    if not per_source:
        return shuffled([t.task_id for t in pool], seed)[:count]
    by_source: dict[str, list[str]] = {}
    for t in pool:
        by_source.setdefault(t.source, []).append(t.task_id)
    names = sorted(by_source)
    out: list[str] = []
    left = count
    for i, name in enumerate(names):  # fair shares; a small source's unused share goes to the next ones
        share = -(-left // (len(names) - i))
        taken = shuffled(by_source[name], seed)[:share]
        out += taken
        left -= len(taken)
    return out


def rule_experts(rule: ExpertRule, tasks: Sequence[TaskSpec], *, what: str = "experts.rules",
                 notes: list[str] | None = None) -> dict[str, tuple[str, ...]]:
    """Expert id → the task ids it is fine-tuned on, for one rule."""
    pool = of_sources(tasks, rule.sources)
    multi = [t for t in pool if not t.is_binary]
    noted = len(notes) if notes is not None else 0
    if rule.by == "task":
        out = {expert_id_for(t): (t,) for t in pick_tasks(pool, rule.sources, rule.count, rule.seed, what=what,
                                                          notes=notes)}
    elif rule.by == "source":
        groups = _groups(multi, lambda t: t.source)
        out = {expert_id_for(f"source:{name}"): members for name, members in sorted(groups.items())}
    elif rule.by == "taxon":
        groups = _groups([t for t in multi if len(t.taxonomy) > rule.depth], lambda t: f"{t.source}/{t.taxonomy[rule.depth]}")
        n_train = {t.task_id: t.n_train for t in pool}
        size = {name: sum(n_train[m] for m in members) for name, members in groups.items()}
        largest = sorted(groups, key=lambda name: (-size[name], name))[: rule.count]
        if rule.count is not None and 0 < len(largest) < rule.count and notes is not None:
            notes.append(f"{what}: {len(largest)} taxa at depth {rule.depth} of {rule.sources}, fewer than the "
                         f"{rule.count} asked; taking them all")
        out = {expert_id_for(f"taxon:{name}"): groups[name] for name in largest}
    else:  # kind: one binary task per attribute kind
        kinds = _groups([t for t in pool if t.is_binary], lambda t: f"{t.source}/{t.task_id.split('/')[1]}")
        out = {expert_id_for(first): (first,) for name in sorted(kinds)
               for first in [shuffled(kinds[name], rule.seed)[0]]}
    if not out and notes is not None and len(notes) == noted:
        notes.append(f"{what}: a rule by {rule.by} of {rule.sources} chooses no expert in this selection")
    return out


def _groups(tasks: Sequence[TaskSpec], key) -> dict[str, tuple[str, ...]]:
    out: dict[str, list[str]] = {}
    for t in tasks:
        out.setdefault(key(t), []).append(t.task_id)
    return {k: tuple(sorted(v)) for k, v in out.items()}


def meta_task_tasks(meta: MetaTaskConfig, tasks: Sequence[TaskSpec], notes: list[str] | None = None) -> list[str]:
    chosen = pick_tasks(tasks, meta.task_sources, meta.tasks, meta.seed, per_source=meta.per_source,
                        what=f"meta-task {meta.name}", notes=notes)
    if not chosen and notes is not None:
        notes.append(f"meta-task {meta.name}: no task of {meta.task_sources} in the selection; the report "
                     "cannot make its table")
    return chosen


def meta_task_trainings(meta: MetaTaskConfig, tasks: Sequence[TaskSpec],
                        notes: list[str] | None = None) -> dict[str, tuple[str, ...]]:
    """The experts a meta-task adds to the run (``own`` or rules; none for ``sources``)."""
    if meta.experts == "sources":
        return {}
    if meta.experts == "own":
        return {expert_id_for(t): (t,) for t in meta_task_tasks(meta, tasks)}
    out: dict[str, tuple[str, ...]] = {}
    for rule in meta.experts:
        for eid, members in rule_experts(rule, tasks, what=f"meta-task {meta.name}", notes=notes).items():
            out.setdefault(eid, members)
    return out


def resolve(meta: MetaTaskConfig, tasks: Sequence[TaskSpec], trainings: Mapping[str, Sequence[str]],
            generic: str | None, notes: list[str] | None = None) -> MetaTask:
    """The meta-task's tasks and candidate experts, given the run's selected tasks and its experts
    (expert id → training task ids; the generic expert, when the run has one, is always a candidate)."""
    chosen = meta_task_tasks(meta, tasks, notes)
    if meta.experts == "sources":
        source = {t.task_id: t.source for t in tasks}
        experts = [e for e, members in trainings.items() if members and (
            meta.expert_sources == "all" or all(source.get(m) in meta.expert_sources for m in members))]
    else:
        experts = [e for e in meta_task_trainings(meta, tasks) if e in trainings]
    return MetaTask(meta.name, tuple(chosen), tuple(([generic] if generic else []) + experts))
