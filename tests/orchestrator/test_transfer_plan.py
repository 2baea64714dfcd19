"""Planning the transfer stages: pair selection (pure), the shared from-init runs, keys, the dry-run estimate."""

from __future__ import annotations

import pytest

from orchestrator.config import SweepConfig, TransferConfig
from orchestrator.cost import describe, estimate
from orchestrator.plan import plan, plan_transfer
from orchestrator.transfer_pairs import Pair, nearest_pairs, static_pairs
from tasks.errors import TaskSweepInputError


def _config(mini_roots, include: list[str], **transfer) -> SweepConfig:
    return SweepConfig.model_validate({
        "datasets": {k: str(v) for k, v in mini_roots.items()},
        "tasks": {"include": include},
        "embeddings": {"probe": "tiny_resnet"},
        "transfer": transfer,
    })


@pytest.fixture(scope="module")
def ids(mini_library) -> list[str]:
    by_source: dict[str, list[str]] = {}
    for t in mini_library.tasks:
        by_source.setdefault(t.source, []).append(t.task_id)
    return by_source["inat2018"][:3] + by_source["cub200"][:2]


def test_explicit_pairs_keep_order_and_drop_repeats(mini_library, ids) -> None:
    cfg = TransferConfig(mode="explicit", pairs=[(ids[0], ids[1]), (ids[2], ids[1]), (ids[0], ids[1])])
    tasks = [t for t in mini_library.tasks if t.task_id in ids]
    assert static_pairs(cfg, tasks) == [Pair(ids[0], ids[1], "explicit"), Pair(ids[2], ids[1], "explicit")]


def test_group_mode_gives_every_ordered_pair_within_each_group(mini_library, ids) -> None:
    tasks = [t for t in mini_library.tasks if t.task_id in ids]
    pairs = static_pairs(TransferConfig(mode="group", groups=["source:cub200", ids[:2]]), tasks)
    cub = ids[3:]
    want = {(cub[0], cub[1]), (cub[1], cub[0]), (ids[0], ids[1]), (ids[1], ids[0])}
    assert {(p.source, p.target) for p in pairs} == want and len(pairs) == 4


@pytest.mark.parametrize("transfer", [
    {"mode": "explicit", "pairs": [["inat2018/nope", "cub200/nope"]]},
    {"mode": "group", "groups": [["inat2018/nope"]]},
    {"mode": "group", "groups": ["source:nosuch"]},
    {"mode": "nearest", "targets": ["cub200/nope"]},
    {"mode": "explicit"},
])
def test_bad_selection_is_a_clear_error(mini_roots, mini_library, ids, transfer) -> None:
    with pytest.raises(TaskSweepInputError, match="transfer"):
        plan(_config(mini_roots, ids, **transfer), mini_library.tasks)


def test_nearest_takes_the_k_smallest_d_asym_then_k_seeded_random() -> None:
    cands = ["a", "b", "c", "d", "e", "f"]
    d = {(s, "a"): v for s, v in zip(cands, [0.0, 0.5, 0.1, 0.3, float("nan"), 0.2])}
    pairs = nearest_pairs(["a"], cands, d, k=2, seed=7)
    assert [p.source for p in pairs[:2]] == ["c", "f"] and {p.selection for p in pairs[:2]} == {"nearest"}
    random_part = pairs[2:]
    assert len(random_part) == 2 and {p.selection for p in random_part} == {"random"}
    assert not {p.source for p in random_part} & {"a", "c", "f"}  # never the target, never a nearest one
    assert nearest_pairs(["a"], cands, d, k=2, seed=7) == pairs  # deterministic
    draws = {tuple(p.source for p in nearest_pairs(["a"], cands, d, k=2, seed=s)[2:]) for s in range(20)}
    assert len(draws) > 1  # the seed matters
    assert len(nearest_pairs(["a"], cands, d, k=10, seed=0)) == 5  # capped by the candidates


def test_from_init_runs_are_shared_by_every_pair_with_that_target(mini_roots, mini_library, ids) -> None:
    pairs = [[ids[0], ids[3]], [ids[1], ids[3]], [ids[2], ids[3]], [ids[0], ids[4]]]
    p = plan(_config(mini_roots, ids, mode="explicit", pairs=pairs, seeds=[0, 1]), mini_library.tasks)
    assert p.counts()["transfer"] == 4 * 2
    assert p.counts()["transfer_init"] == 2 * 2  # two targets × two seeds, not one per pair
    init_keys = {u.key for u in p.stages["transfer_init"]}
    assert {u.init_key for u in p.stages["transfer"]} == init_keys
    # every source got its own per-task expert
    assert {f"expert/{a}" for a in ids[:3]} <= set(p.experts)


def test_changing_the_budget_rekeys_only_the_transfer_units(mini_roots, mini_library, ids) -> None:
    base = dict(mode="group", groups=[ids[:3]])
    p1 = plan(_config(mini_roots, ids, **base), mini_library.tasks)
    p2 = plan(_config(mini_roots, ids, **base, epochs=4), mini_library.tasks)
    p3 = plan(_config(mini_roots, ids, **base), mini_library.tasks)
    keys = lambda p, s: [u.key for u in p.stages[s]]  # noqa: E731
    for stage in ("experts", "heads", "embeddings", "distances"):
        assert keys(p1, stage) == keys(p2, stage)
    for stage in ("transfer_init", "transfer"):
        assert not set(keys(p1, stage)) & set(keys(p2, stage))
        assert keys(p1, stage) == keys(p3, stage)


def test_nearest_is_planned_from_distances_and_costed_before(mini_roots, mini_library, ids) -> None:
    config = _config(mini_roots, ids, mode="nearest", k=1, targets=ids[3:], seeds=[0, 1])
    p = plan(config, mini_library.tasks)
    assert p.transfer_deferred and p.stages["transfer"] == []
    assert p.counts()["transfer_init"] == 2 * 2
    d = {(a, b): float(i) for i, a in enumerate(ids) for b in ids}
    units = plan_transfer(config, p, d)
    assert len(units) == 2 * 2 * 2  # targets × (1 nearest + 1 random) × seeds
    assert [u.key for u in plan_transfer(config, p, d)] == [u.key for u in units]
    assert all(u.source_task == ids[0] for u in units if u.selection == "nearest")
    cost = estimate(p, config)
    assert sum(cost["transfer"].values()) > 0 and sum(cost["transfer_init"].values()) > 0
    text = describe(p, config)
    line = next(x for x in text.splitlines() if x.startswith("transfer "))
    assert line.split()[1] == "8" and "after the distances" in line
