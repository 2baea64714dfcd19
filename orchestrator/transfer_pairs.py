"""Which (source task, target task) pairs the transfer stages measure: pure functions, no I/O.

``explicit`` and ``group`` pairs follow from the config and the selected tasks alone. ``nearest`` pairs
need ``d_asym``: per target ``b``, the ``k`` candidates ``a ≠ b`` with the smallest ``d_asym(a → b)``
(ties and missing distances broken by task order, missing last), then ``k`` more drawn at random from
the remaining candidates with a generator seeded by ``selection_seed`` and the target id. Same config,
same distances: same pairs, in the same order.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from typing import NamedTuple

from orchestrator.config import TransferConfig
from tasks.errors import TaskSweepInputError
from tasks.spec import TaskSpec


class Pair(NamedTuple):
    source: str  # task id of the source (its expert is expert/<source>)
    target: str
    selection: str  # explicit, group, nearest or random


def _check_known(names: list[str], known: list[str], key: str) -> None:
    missing = sorted({n for n in names if n not in set(known)})
    if missing:
        raise TaskSweepInputError(
            f"transfer.{key} names {len(missing)} task(s) not in the sweep's selection: {missing[:5]}; "
            "use task ids of the selected tasks (tasks.sources / tasks.include)"
        )


def _group_members(entry: str | list[str], tasks: list[TaskSpec]) -> list[str]:
    if isinstance(entry, str):
        if not entry.startswith("source:"):
            raise TaskSweepInputError(f"transfer.groups: {entry!r} is neither source:<name> nor a list of task ids")
        members = [t.task_id for t in tasks if t.source == entry.split(":", 1)[1]]
        if not members:
            raise TaskSweepInputError(f"transfer.groups: {entry!r} matches no selected task")
        return members
    _check_known(list(entry), [t.task_id for t in tasks], "groups")
    return list(dict.fromkeys(entry))


def static_pairs(cfg: TransferConfig, tasks: list[TaskSpec]) -> list[Pair]:
    """The pairs of the ``explicit`` and ``group`` modes (empty for ``off`` and ``nearest``)."""
    ids = [t.task_id for t in tasks]
    if cfg.mode == "explicit":
        if not cfg.pairs:
            raise TaskSweepInputError("transfer.mode is explicit but transfer.pairs is empty: list [source, target] pairs")
        _check_known([x for p in cfg.pairs for x in p], ids, "pairs")
        return [Pair(a, b, "explicit") for a, b in dict.fromkeys(cfg.pairs)]
    if cfg.mode == "group":
        if not cfg.groups:
            raise TaskSweepInputError("transfer.mode is group but transfer.groups is empty")
        out = [Pair(a, b, "group") for g in cfg.groups for m in [_group_members(g, tasks)] for a in m for b in m if a != b]
        return list(dict.fromkeys(out))
    return []


def nearest_roles(cfg: TransferConfig, tasks: list[TaskSpec]) -> tuple[list[str], list[str]]:
    """(targets, candidate sources) of the ``nearest`` mode, in library order."""
    ids = [t.task_id for t in tasks]
    _check_known(cfg.targets, ids, "targets")
    _check_known(cfg.candidates, ids, "candidates")
    targets = [t for t in ids if t in set(cfg.targets)] if cfg.targets else ids
    candidates = [t for t in ids if t in set(cfg.candidates)] if cfg.candidates else ids
    if len(candidates) < 2:
        raise TaskSweepInputError("transfer.mode nearest needs at least two candidate source tasks")
    return targets, candidates


def nearest_pairs(targets: list[str], candidates: list[str], d_asym: Mapping[tuple[str, str], float], *, k: int,
                  seed: int) -> list[Pair]:
    """Per target: ``k`` nearest candidates by ``d_asym[(source, target)]`` then ``k`` random others."""
    out = []
    for b in targets:
        pool = [a for a in candidates if a != b]

        def rank(i_a: tuple[int, str]) -> tuple[bool, float, int]:
            d = d_asym.get((i_a[1], b), math.nan)
            return (math.isnan(d), 0.0 if math.isnan(d) else d, i_a[0])

        ordered = [a for _, a in sorted(enumerate(pool), key=rank)]
        near, rest = ordered[:k], ordered[k:]
        drawn = random.Random(f"{seed}:{b}").sample(sorted(rest, key=pool.index), min(k, len(rest)))
        out += [Pair(a, b, "nearest") for a in near] + [Pair(a, b, "random") for a in drawn]
    return out


def sources_and_targets(cfg: TransferConfig, tasks: list[TaskSpec]) -> tuple[list[str], list[str]]:
    """Every task that may be a source (needs its own expert) and every target, known before any distance."""
    if cfg.mode == "off":
        return [], []
    if cfg.mode == "nearest":
        targets, candidates = nearest_roles(cfg, tasks)
        return candidates, targets
    pairs = static_pairs(cfg, tasks)
    return list(dict.fromkeys(p.source for p in pairs)), list(dict.fromkeys(p.target for p in pairs))
