"""A rough compute estimate of a plan, for ``launch --dry-run``.

Cost is counted in images through the backbone per kind of pass: ``features`` (a forward: the
heads' and domain feature passes, Task2Vec's feature cache, the error measurements after
fine-tuning), ``finetune`` (a training step: forward + backward + update) and ``fisher`` (a
Task2Vec Fisher step), then turned into GPU hours with a rate per kind (images/s of one GPU, at the
run's precision): measured by ``benchmarks/gpu.py`` and passed with ``--rates FILE``, or the shipped
default, which is an assumption and says so. Distances are counted in pairs; they cost seconds.
The transfer stages (two fine-tunings per measured pair, the from-init one shared per target and
seed) are usually the most expensive; ``nearest`` mode's pairs are not known before the distances,
but their number is (2k per target), so the estimate counts them with a placeholder ranking.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from experts.task2vec import feature_rows
from orchestrator.config import SweepConfig
from orchestrator.plan import Plan, head_units, plan_transfer
from orchestrator.stages.embeddings import EmbedDomain, EmbedTask
from orchestrator.stages.experts import TrainExpert
from orchestrator.stages.heads import FitHeads
from orchestrator.stages.transfer import FineTuneFromInit, FineTuneFromSource
from tasks.spec import TaskSpec

KINDS = ("features", "finetune", "fisher")

#: The shipped default, in the format ``benchmarks/gpu.py`` writes. No GPU has measured it: it is the
#: former single constant (2,000 forward images/s, ResNet-34 at 224 px) with a training or Fisher step
#: counted as three forwards. Replace it with a measurement: ``--rates benchmarks/results/gpu-<device>.json``.
ASSUMED_RATES: dict = {
    "device": "no device: an assumption of 2,000 forward images/s per GPU, a backward pass = 2 forwards",
    "probe": "resnet34",
    "image_size": 224,
    "rates": {"features": {"fp32": 2000.0, "bf16": 2000.0, "fp16": 2000.0},
              "finetune": {"fp32": 667.0, "bf16": 667.0, "fp16": 667.0},
              "fisher": {"fp32": 667.0, "bf16": 667.0}},
}


@dataclass(frozen=True)
class Rates:
    """Images/s of one GPU per kind of pass, for a run's precision settings, and where they come from."""

    features: float
    finetune: float
    fisher: float
    source: str
    assumed: bool = False  # the shipped default, not a measurement
    notes: tuple[str, ...] = ()

    def of(self, kind: str) -> float:
        return float(getattr(self, kind))


def load_rates(path: Path | None, config: SweepConfig) -> Rates:
    """Rates from a ``benchmarks/gpu.py`` JSON file, or the shipped assumption (``path`` None).

    Each kind takes the rate measured at the run's ``runtime.precision.<kind>`` (float32's when that
    precision was not measured, with a note). Raises ``TaskSweepInputError`` for an unreadable file.
    """
    from tasks.errors import TaskSweepInputError

    if path is None:
        data, source = ASSUMED_RATES, f"shipped default, not measured ({ASSUMED_RATES['device']})"
    else:
        try:
            data = json.loads(Path(path).read_text())
            data["rates"]  # noqa: B018  (the key every rates file has)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise TaskSweepInputError(f"{path}: not a rates file written by benchmarks/gpu.py ({exc})") from exc
        source = f"{path}, measured on {data.get('device', 'an unnamed device')} ({data.get('measured_at', 'undated')})"
    rates, notes = {}, []
    for kind in KINDS:
        wanted = getattr(config.runtime.precision, kind)
        by_precision = data["rates"].get(kind) or {}
        if wanted not in by_precision and "fp32" not in by_precision:
            raise TaskSweepInputError(f"{path}: no {kind} rate (expected rates.{kind}.{wanted} or .fp32)")
        if wanted not in by_precision:
            notes.append(f"{kind}: no {wanted} rate measured, using fp32's")
        rates[kind] = float(by_precision.get(wanted, by_precision.get("fp32")))
    probe, size = data.get("probe"), data.get("image_size")
    if probe != config.embeddings.probe or size != config.runtime.image_size:
        notes.append(f"rates are for {probe} at {size} px; this run uses {config.embeddings.probe} at "
                     f"{config.runtime.image_size} px (not rescaled)")
    return Rates(rates["features"], rates["finetune"], rates["fisher"], source, path is None, tuple(notes))


def estimate(the_plan: Plan, config: SweepConfig) -> dict[str, dict[str, float]]:
    """Images through the backbone per stage and kind of pass (``KINDS``); distances: pairs."""
    tasks = {t.task_id: t for t in the_plan.tasks}
    out = {stage: dict.fromkeys(KINDS, 0.0) for stage in
           ("experts", "heads", "embeddings", "distances", "transfer_init", "transfer")}
    for unit in the_plan.stages.get("experts", []):
        if isinstance(unit, TrainExpert):
            members = [tasks[t] for t in unit.task_ids]
            out["experts"]["finetune"] += sum(t.n_train for t in members) * config.experts.epochs
            out["experts"]["features"] += sum(t.n_train + t.n_test for t in members)  # the error measurements
    out["heads"]["features"] = heads_images(the_plan.stages.get("heads", []), tasks)
    t2v = config.embeddings.task2vec_config()  # one for the run: built once, not per unit
    for unit in the_plan.stages.get("embeddings", []):
        if isinstance(unit, EmbedTask):
            epochs = 2 if unit.method == "variational" else 1
            out["embeddings"]["features"] += feature_rows(tasks[unit.task_id].n_train, t2v, unit.method)
            out["embeddings"]["fisher"] += t2v.fisher_samples * epochs
        elif isinstance(unit, EmbedDomain):
            out["embeddings"]["features"] += max(tasks[t].n_train for t in unit.task_ids)
    for stage in ("transfer_init", "transfer"):
        for unit in transfer_stage_units(the_plan, config, stage):
            assert isinstance(unit, (FineTuneFromInit, FineTuneFromSource))
            t = tasks[unit.target_task]
            out[stage]["finetune"] += t.n_train * config.transfer.epochs
            out[stage]["features"] += t.n_train + t.n_test
    out["distances"] = {"pairs": float(len(the_plan.tasks) ** 2 * len(the_plan.stages.get("distances", [])))}
    return out


def heads_images(units: list, tasks: dict[str, TaskSpec]) -> float:
    """Images forwarded by the heads units: one per image of a unit's shared image group, else per task image."""
    total = 0.0
    for unit in units:
        assert isinstance(unit, FitHeads)
        members = [tasks[t] for t in unit.task_ids]
        shared = len({t.image_group for t in members}) == 1
        total += max(t.n_train + t.n_test for t in members) if shared else sum(t.n_train + t.n_test for t in members)
    return total


def counts(the_plan: Plan) -> list[str]:
    """The plan's size: tasks, experts, (expert, task) pairs with a head, embedding rows (all methods)."""
    heads = sum(len(u.task_ids) for u in the_plan.stages.get("heads", []))
    embeddings = sum(1 if isinstance(u, EmbedTask) else len(u.task_ids) for u in the_plan.stages.get("embeddings", []))
    return [f"tasks: {len(the_plan.tasks)}", f"experts: {len(the_plan.experts)}", f"head pairs: {heads}",
            f"embeddings: {embeddings}"]


def dense_vs_meta_tasks(the_plan: Plan, config: SweepConfig, rates: Rates,
                        cost: dict[str, dict[str, float]] | None = None) -> tuple[float, float] | None:
    """(heads-stage, whole-sweep) GPU hours of dense heads (every expert on every task) over the meta-tasks'
    pairs alone, other stages equal; None when the heads are an explicit list or there is no meta-task.
    ``cost``: the plan's ``estimate`` when the caller has it already."""
    if isinstance(config.heads.pairs, list) or not the_plan.meta_tasks:
        return None
    tasks = {t.task_id: t for t in the_plan.tasks}
    heads = {mode: heads_images([FitHeads("", e, chunk) for e, chunk in head_units(
        config.model_copy(update={"heads": config.heads.model_copy(update={"pairs": mode})}),
        the_plan.tasks, the_plan.experts, the_plan.meta_tasks)], tasks) / rates.features / 3600
        for mode in ("all", "meta_tasks")}
    cost = cost or estimate(the_plan, config)
    rest = sum(gpu_hours(v, rates) for stage, v in cost.items() if stage not in ("heads", "distances"))
    return heads["all"] / heads["meta_tasks"], (rest + heads["all"]) / (rest + heads["meta_tasks"])


def gpu_hours(images: dict[str, float], rates: Rates) -> float:
    return sum(n / rates.of(kind) for kind, n in images.items()) / 3600


def transfer_stage_units(the_plan: Plan, config: SweepConfig, stage: str) -> list:
    """A transfer stage's units; for deferred ``nearest`` pairs, the same number planned without distances."""
    if stage == "transfer" and the_plan.transfer_deferred:
        return plan_transfer(config, the_plan, {})
    return the_plan.stages.get(stage, [])


def describe(the_plan: Plan, config: SweepConfig, rates: Rates | None = None) -> str:
    rates = rates or load_rates(None, config)
    cost = estimate(the_plan, config)
    lines = [f"{len(the_plan.tasks)} tasks, {len(the_plan.experts)} experts", "",
             f"{'stage':<13} {'units':>7} {'feature images':>15} {'fine-tune images':>17} {'Fisher images':>14} "
             f"{'GPU hours':>10}"]
    total = 0.0
    for stage in the_plan.stages:
        units = transfer_stage_units(the_plan, config, stage)
        if stage == "distances":
            lines.append(f"{stage:<13} {len(units):>7} {int(cost[stage]['pairs']):>15,d} pairs {'':>25} {'~0':>10}")
            continue
        hours = gpu_hours(cost[stage], rates)
        total += hours
        note = "  (pairs chosen after the distances)" if stage == "transfer" and the_plan.transfer_deferred else ""
        c = cost[stage]
        lines.append(f"{stage:<13} {len(units):>7} {c['features']:>15,.0f} {c['finetune']:>17,.0f} "
                     f"{c['fisher']:>14,.0f} {hours:>10.2f}{note}")
    p = config.runtime.precision
    lines += ["", f"total ≈ {total:.2f} GPU hours at {rates.features:,.0f} (features, {p.features}), "
                  f"{rates.finetune:,.0f} (fine-tuning, {p.finetune}), {rates.fisher:,.0f} (Fisher, {p.fisher}) "
                  "images/s per GPU",
              f"rates: {rates.source}"
              + ("; measure yours: python benchmarks/gpu.py, then --rates FILE" if rates.assumed else ""),
              *(f"note: {n}" for n in rates.notes), ""]
    lines += counts(the_plan)
    ratio = dense_vs_meta_tasks(the_plan, config, rates, cost)
    if ratio is not None:
        lines.append(f"dense heads (every expert x every task) / the meta-tasks' pairs alone: heads stage {ratio[0]:.2f}x, "
                     f"whole sweep {ratio[1]:.2f}x (heads.pairs: {config.heads.pairs})")
    lines += [f"note: {n}" for n in the_plan.notes]
    return "\n".join(lines)
