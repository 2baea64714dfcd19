"""A rough compute estimate of a plan, for ``launch --dry-run``.

Cost is counted in image forward passes through the backbone (a backward pass counts as two more),
then turned into GPU hours with an assumed throughput (images/s for a ResNet-34 forward at 224 px;
measure yours and pass it: ``--throughput``). Distances are counted in pairs; they cost seconds.
The transfer stages (two fine-tunings per measured pair, the from-init one shared per target and
seed) are usually the most expensive; ``nearest`` mode's pairs are not known before the distances,
but their number is (2k per target), so the estimate counts them with a placeholder ranking.
"""

from __future__ import annotations

from orchestrator.config import SweepConfig
from orchestrator.plan import Plan, plan_transfer
from orchestrator.stages.embeddings import EmbedDomain, EmbedTask
from orchestrator.stages.experts import TrainExpert
from orchestrator.stages.heads import FitHeads
from orchestrator.stages.transfer import FineTuneFromInit, FineTuneFromSource

DEFAULT_THROUGHPUT = 2000.0  # ResNet-34 forward, 224 px, one modern GPU, mixed precision (an assumption)


def estimate(the_plan: Plan, config: SweepConfig) -> dict[str, float]:
    """Forward-pass equivalents per stage."""
    tasks = {t.task_id: t for t in the_plan.tasks}
    out = {"experts": 0.0, "heads": 0.0, "embeddings": 0.0, "distances": 0.0, "transfer_init": 0.0, "transfer": 0.0}
    for unit in the_plan.stages.get("experts", []):
        if isinstance(unit, TrainExpert):
            n = sum(tasks[t].n_train + tasks[t].n_test for t in unit.task_ids)
            out["experts"] += 3.0 * n * config.experts.epochs
    for unit in the_plan.stages.get("heads", []):
        assert isinstance(unit, FitHeads)
        members = [tasks[t] for t in unit.task_ids]
        shared = len({t.image_group for t in members}) == 1
        out["heads"] += max(t.n_train + t.n_test for t in members) if shared else sum(t.n_train + t.n_test for t in members)
    emb = config.embeddings
    for unit in the_plan.stages.get("embeddings", []):
        if isinstance(unit, EmbedTask):
            fisher = emb.task2vec_config().fisher_samples
            epochs = 2 if unit.method == "variational" else 1
            out["embeddings"] += min(tasks[unit.task_id].n_train, emb.max_samples) + 3.0 * fisher * epochs
        elif isinstance(unit, EmbedDomain):
            members = [tasks[t] for t in unit.task_ids]
            out["embeddings"] += max(t.n_train for t in members)
    for stage in ("transfer_init", "transfer"):
        for unit in transfer_stage_units(the_plan, config, stage):
            assert isinstance(unit, (FineTuneFromInit, FineTuneFromSource))
            t = tasks[unit.target_task]
            out[stage] += 3.0 * t.n_train * config.transfer.epochs + t.n_train + t.n_test
    out["distances"] = float(len(the_plan.tasks) ** 2 * len(the_plan.stages.get("distances", [])))
    return out


def transfer_stage_units(the_plan: Plan, config: SweepConfig, stage: str) -> list:
    """A transfer stage's units; for deferred ``nearest`` pairs, the same number planned without distances."""
    if stage == "transfer" and the_plan.transfer_deferred:
        return plan_transfer(config, the_plan, {})
    return the_plan.stages.get(stage, [])


def describe(the_plan: Plan, config: SweepConfig, throughput: float = DEFAULT_THROUGHPUT) -> str:
    cost = estimate(the_plan, config)
    lines = [f"{len(the_plan.tasks)} tasks, {len(the_plan.experts)} experts", "",
             f"{'stage':<13} {'units':>7} {'forward-image equivalents':>26} {'GPU hours':>10}"]
    total = 0.0
    for stage in the_plan.stages:
        units = transfer_stage_units(the_plan, config, stage)
        if stage == "distances":
            lines.append(f"{stage:<13} {len(units):>7} {int(cost[stage]):>20,d} pairs {'~0':>10}")
            continue
        hours = cost[stage] / throughput / 3600
        total += hours
        note = "  (pairs chosen after the distances)" if stage == "transfer" and the_plan.transfer_deferred else ""
        lines.append(f"{stage:<13} {len(units):>7} {cost[stage]:>26,.0f} {hours:>10.2f}{note}")
    lines += ["", f"total ≈ {total:.2f} GPU hours at {throughput:,.0f} images/s (an assumption: pass --throughput)"]
    return "\n".join(lines)
