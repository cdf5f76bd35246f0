"""Content of the table specs in ``specs/``: every table is there, every claim holds on the
paper's own numbers, key numbers are transcribed exactly, rows are in the paper's order.

The numbers below are checked against the papers in /work/shared/papers (and, for TrajectoryNet
Table 1's marks and Table 7's rows, the authors' poster); see each spec's ``recovery:``.
"""
from __future__ import annotations

import operator

import pytest

from repro.claims import check_claims, reported_values
from repro.spec.loader import default_specs_dir, load_specs
from repro.spec.schema import Claim, TableSpec

EXPECTED_TABLES = (
    [f"trajectorynet:table{n}" for n in range(1, 9)]
    + [f"tvnet:table{n}" for n in range(1, 5)]
    + [f"dynamics:table{n}" for n in range(1, 10)]
    + [f"lgd:table{n}" for n in range(2, 8)]  # LGD Table 1 is the architecture, not results
)


@pytest.fixture(scope="module")
def specs() -> dict[str, TableSpec]:
    return load_specs(default_specs_dir(), check_models=False)


def test_all_27_tables_load(specs):
    assert len(EXPECTED_TABLES) == 27
    assert sorted(specs) == sorted(EXPECTED_TABLES)


def test_model_names_are_registered():
    # Every `model.name` a spec uses exists in the registry (the loader's strict mode).
    assert len(load_specs(default_specs_dir(), check_models=True)) == 27


# --- claims -------------------------------------------------------------------------------------

_OPS = {">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le}


def _holds(claim: Claim, spec: TableSpec) -> bool:
    """Independent evaluator: ``a op b`` and, with a margin, a beats b by strictly more."""
    a = spec.row(claim.a).reported[claim.metric]
    b = claim.b if isinstance(claim.b, (int, float)) else spec.row(claim.b).reported[claim.metric]
    assert a is not None and b is not None, f"{spec.key} {claim.id}: a claim needs both numbers"
    if claim.form == "ratio":  # a / b op ratio
        return _OPS[claim.op](a / b, claim.ratio)
    if claim.form == "within":  # |a - b| <= tolerance
        return abs(a - b) <= claim.tolerance
    if not _OPS[claim.op](a, b):
        return False
    gap = a - b if claim.op in (">", ">=") else b - a
    return claim.margin == 0 or gap > claim.margin


def test_every_claim_holds_on_reported_numbers(specs):
    failed = []
    for key, spec in specs.items():
        for result in check_claims(spec, reported_values(spec)):
            if result.status != "held" or not _holds(result.claim, spec):
                failed.append(f"{key} {result.id}: {result.status} (a={result.a}, b={result.b})")
    assert failed == []


def test_claims_exist_for_every_numeric_table(specs):
    numeric = [k for k, s in specs.items() if s.kind == "numeric"]
    assert len(numeric) == 26
    assert [k for k in numeric if not specs[k].claims] == []
    total = sum(len(s.claims) for s in specs.values())
    assert total >= 150


def test_claim_evaluator_on_known_cases(specs):
    t3 = specs["trajectorynet:table3"]
    # 36.08 - 34.96 = 1.12 > 1.0: "improvement of more than 1%".
    assert _holds(Claim(id="x", text="", metric="top1", a="trajectory_dim4", op=">", b="appearance", margin=1.0), t3)
    assert not _holds(Claim(id="x", text="", metric="top1", a="trajectory_dim4", op=">", b="appearance", margin=1.2), t3)
    assert not _holds(Claim(id="x", text="", metric="top1", a="appearance", op=">", b="two_stream"), t3)


# --- spot checks of transcribed numbers ---------------------------------------------------------

SPOT = [
    # TrajectoryNet
    ("trajectorynet:table2", "s3d", "top1", 34.30),
    ("trajectorynet:table2", "traj_res3b1_max", "top5", 67.72),
    ("trajectorynet:table3", "appearance", "params", 15.2),
    ("trajectorynet:table3", "motion_feature", "params", 15.9),
    ("trajectorynet:table3", "trajectory_dim4", "params", 15.2),
    ("trajectorynet:table3", "two_stream", "params", 30.4),
    ("trajectorynet:table3", "appearance", "top1", 34.96),
    ("trajectorynet:table3", "appearance", "top5", 66.24),
    ("trajectorynet:table3", "trajectory_dim4", "top1", 36.08),
    ("trajectorynet:table3", "two_stream", "top5", 72.79),
    ("trajectorynet:table4", "tvl1", "top1", 34.96),
    ("trajectorynet:table4", "mn2_finetune", "top1", 34.72),
    ("trajectorynet:table4", "mn17_finetune_unsup", "top5", 68.52),
    ("trajectorynet:table5", "traj_mn17_unsup_step2", "top1", 43.32),
    ("trajectorynet:table5", "s3d_step2", "top5", 74.57),
    ("trajectorynet:table6", "s3d", "forward_s", 0.390),
    ("trajectorynet:table6", "traj_tvl1", "forward_s", 0.426),
    ("trajectorynet:table6", "traj_mn17", "forward_s", 0.563),
    ("trajectorynet:table6", "traj_mn17", "delta_s", 0.137),
    ("trajectorynet:table7", "traj_mn17_nomotion_kinetics", "val_top1", 47.8),
    ("trajectorynet:table8", "traj_mn2_16x2", "avg_acc", 79.8),
    # TVNet
    ("tvnet:table1", "tvl1_5_5_50", "epe", 0.66),
    ("tvnet:table1", "tvl1_10", "epe", 3.48),
    ("tvnet:table1", "tvnet_50_none", "epe", 2.93),
    ("tvnet:table1", "tvnet_50_u0", "epe", 1.58),
    ("tvnet:table1", "tvnet_50_all", "epe", 0.35),
    ("tvnet:table1", "tvnet_3_1_10_u0", "epe", 0.82),
    ("tvnet:table2", "tvnet_50", "fps", 12),
    ("tvnet:table2", "tvl1", "rho", 0.86),
    ("tvnet:table3", "c3d", "ucf101", 82.3),
    ("tvnet:table3", "actionflownet", "hmdb51", 56.4),
    ("tvnet:table3", "tvl1", "ucf101", 85.1),
    ("tvnet:table3", "tvnet50", "hmdb51", 57.5),
    ("tvnet:table4", "ours", "hmdb51", 71.0),
    ("tvnet:table4", "ours_idt", "ucf101", 95.4),
    # Disentangling dynamics
    ("dynamics:table1", "pool3d_gradual", "acc", 86.5),
    ("dynamics:table2", "frames_16", "acc", 87.4),
    ("dynamics:table3", "tvl1", "fps", 15),
    ("dynamics:table3", "disp_map_112", "fps", 190),
    ("dynamics:table3", "disp_map_224", "fps", 53),
    ("dynamics:table3", "disp_map_224", "acc", 89.6),
    ("dynamics:table4", "disp_warp_rgb", "acc", 80.0),
    ("dynamics:table5", "full_tsn", "acc", 91.2),
    ("dynamics:table6", "static_tvl1_warpdiff", "acc", 94.1),
    ("dynamics:table6", "static_disp_rgbdiff", "acc", 91.5),
    ("dynamics:table7", "ours_kinetics", "acc", 95.9),
    ("dynamics:table8", "ours", "top5", 89.9),
    ("dynamics:table9", "motion", "shared_ms", 15.4),
    ("dynamics:table9", "overall", "fps", 41),
    # LGD
    ("lgd:table2", "tsn_baseline", "top1", 71.0),
    ("lgd:table2", "lgd3d_block", "top5", 92.0),
    ("lgd:table3", "lgd2d_r50_scratch", "top1", 72.5),
    ("lgd:table3", "lgd2d_r50_img", "top1", 74.4),
    ("lgd:table3", "lgd2d_r50_img_com", "top1", 74.8),
    ("lgd:table3", "lgd3d_r50_img_com_long", "top1", 79.4),
    ("lgd:table3", "lgd3d_r101_img_com_long", "top1", 81.5),
    ("lgd:table4", "lgd3d_two_stream", "top1", 81.2),
    ("lgd:table5", "anet18w_three_stream_itxn", "top5", 95.8),
    ("lgd:table5", "lgd3d_two_stream_test", "top1", 82.7),
    ("lgd:table6", "lgd3d_two_stream", "ucf101", 98.2),
    ("lgd:table7", "li", "ucf101d_02", 77.9),
    ("lgd:table7", "lgd3d_two_stream", "jhmdb_05", 84.9),
]


@pytest.mark.parametrize("key,row,metric,value", SPOT)
def test_spot_numbers(specs, key, row, metric, value):
    assert specs[key].row(row).reported[metric] == pytest.approx(value, abs=1e-9)


def test_missing_cells_are_null(specs):
    assert specs["tvnet:table3"].row("c3d").reported["hmdb51"] is None
    assert specs["lgd:table7"].row("singh").reported["ucf101d_005"] is None
    assert specs["dynamics:table3"].row("cost_volume_wta").reported["fps"] is None


# --- rows: order, counts, recovered meanings ---------------------------------------------------

ROW_COUNTS_AND_ENDS = {
    "trajectorynet:table1": (5, "stip", "trajectorynet"),
    "trajectorynet:table2": (6, "s3d", "traj_res3b1_max"),
    "trajectorynet:table3": (4, "appearance", "two_stream"),
    "trajectorynet:table4": (7, "tvl1", "mn17_finetune_unsup"),
    "trajectorynet:table5": (2, "s3d_step2", "traj_mn17_unsup_step2"),
    "trajectorynet:table6": (3, "s3d", "traj_mn17"),
    "trajectorynet:table7": (7, "c3d", "traj_mn17_nomotion_kinetics"),
    "trajectorynet:table8": (9, "tsn_rgb", "traj_mn2_16x2"),
    "tvnet:table1": (21, "tvnet_10_none", "tvl1_5_5_50"),
    "tvnet:table2": (5, "dis_fast", "tvnet_50"),
    "tvnet:table3": (9, "c3d", "tvnet50"),
    "tvnet:table4": (12, "st_resnet", "ours_idt"),
    "dynamics:table1": (4, "conv2d_pool2d", "pool3d_gradual"),
    "dynamics:table2": (5, "frames_1", "frames_16"),
    "dynamics:table3": (8, "tvl1", "disp_map_224"),
    "dynamics:table4": (4, "nowarp_rgb", "disp_warp_rgb"),
    "dynamics:table5": (6, "static_no_tsn", "full_tsn"),
    "dynamics:table6": (6, "static_tvl1", "static_disp_warpdiff"),
    "dynamics:table7": (9, "c3d_1net", "ours_kinetics"),
    "dynamics:table8": (4, "two_stream_rgb", "ours"),
    "dynamics:table9": (4, "static", "overall"),
    "lgd:table2": (8, "tsn_baseline", "lgd3d_block"),
    "lgd:table3": (14, "lgd2d_r50_scratch", "lgd3d_r101_img_com_long"),
    "lgd:table4": (17, "i3d_rgb", "lgd3d_two_stream"),
    "lgd:table5": (13, "anet18w_tsn_rgb", "lgd3d_two_stream_test"),
    "lgd:table6": (14, "idt", "lgd3d_two_stream"),
    "lgd:table7": (11, "weinzaepfel", "lgd3d_two_stream"),
}


@pytest.mark.parametrize("key", sorted(ROW_COUNTS_AND_ENDS))
def test_row_counts_and_order(specs, key):
    count, first, last = ROW_COUNTS_AND_ENDS[key]
    ids = [r.id for r in specs[key].rows]
    assert len(ids) == len(set(ids)) == count
    assert (ids[0], ids[-1]) == (first, last)


def test_trajectorynet_table1_marks_from_poster(specs):
    t1 = specs["trajectorynet:table1"]
    assert t1.kind == "features" and t1.metrics == []
    marks = {r.id: (r.cells["deep"], r.cells["tracking"], r.cells["end2end"]) for r in t1.rows}
    assert marks == {
        "stip": ("✗", "✗", "✗"),
        "dt_idt": ("✗", "✓", "✗"),
        "tsn_i3d": ("✓", "✗", "✓"),
        "tdd": ("✓", "✓", "✗"),
        "trajectorynet": ("✓", "✓", "✓"),
    }


def test_trajectorynet_table4_policies(specs):
    t4 = specs["trajectorynet:table4"]
    policy = {r.id: (r.cells["finetune"], r.cells["unsup"], r.model.args.get("motionnet_mode")) for r in t4.rows[1:]}
    for net in ("mn2", "mn17"):
        assert policy[f"{net}_frozen"] == ("✗", "✗", "frozen")
        assert policy[f"{net}_finetune"] == ("✓", "✗", "finetune")
        assert policy[f"{net}_finetune_unsup"] == ("✓", "✓", "finetune_unsup")


def test_lgd_table3_marks(specs):
    t3 = specs["lgd:table3"]
    designs = [tuple(k for k in ("r50", "r101", "img", "com", "long") if r.cells[k] == "✓") for r in t3.rows]
    per_backbone_2d = [(), ("img",), ("img", "com")]
    per_backbone_3d = per_backbone_2d + [("img", "com", "long")]
    expected = [(d,) + s for d in ("r50", "r101") for s in per_backbone_2d]
    expected += [(d,) + s for d in ("r50", "r101") for s in per_backbone_3d]
    assert designs == expected
    assert [r.cells["method"] for r in t3.rows] == ["LGD-2D"] * 6 + ["LGD-3D"] * 8


def test_trajectorynet_table3_columns_not_swapped(specs):
    for row in specs["trajectorynet:table3"].rows:
        assert row.reported["top5"] > row.reported["top1"]


# --- what each row can run ---------------------------------------------------------------------


def test_rows_name_what_runs_them(specs):
    for key, spec in specs.items():
        for row in spec.rows:
            where = f"{key} {row.id}"
            if row.kind == "cited":
                assert row.cite and row.model is None and row.needs is None, where
                continue
            if spec.kind == "features":
                continue
            assert (row.model is not None) + (row.flow_method is not None) + (row.needs is not None) >= 1, where
            if row.model is not None:
                assert row.input_shape and len(row.input_shape) == 5, where
                if row.flow_method is None:  # a flow row's model is the flow network (no classes)
                    assert row.model.args.get("num_classes") in (51, 101, 174, 400, 600), where
            trains = any(m.job == "train" for m in spec.metrics)
            if trains and row.model is not None:
                assert row.full is not None and (row.mini is not None or row.needs), where
                if row.mini is not None:
                    assert row.mini.dataset == "synth" and row.mini.preset == "mini", where


def test_buildable_rows(specs):
    models = {(k, r.id): r.model.name for k, s in specs.items() for r in s.rows if r.model}
    assert models[("trajectorynet:table3", "two_stream")] == "s3d_two_stream_resnet18"
    assert models[("trajectorynet:table2", "s3d")] == "s3d_resnet18"
    assert models[("lgd:table2", "tsn_baseline")] == "c2d_resnet50"
    assert models[("lgd:table2", "p3d_baseline")] == "p3d_resnet50"
    # Dynamics (issue 14): the branch each row trains; Tables 3 and 5's "full model" are static + motion
    assert models[("dynamics:table1", "pool3d_gradual")] == "dynamics_static_bninception"
    assert models[("dynamics:table3", "disp_map_224")] == "dynamics_static_motion_bninception"
    assert models[("dynamics:table5", "full_tsn")] == "dynamics_static_motion_bninception"
    assert models[("dynamics:table6", "static_disp_warpdiff")] == "dynamics_full_bninception"
    assert models[("dynamics:table9", "overall")] == "dynamics_full_bninception"
    dyn = [(k, r) for k, s in specs.items() if k.startswith("dynamics") for r in s.rows if r.model and r.mini]
    for key, row in dyn:  # the model's snippets x frames = the clip the engine samples
        args, cfg = row.model.args, row.mini
        assert (cfg.segments or 1) * args.get("num_frames", 8) == (cfg.frames or 8), (key, row.id)
        assert args.get("num_segments", 1) == (cfg.segments or 1), (key, row.id)
    t2 = specs["trajectorynet:table2"]
    assert t2.row("traj_res3b1_12_avg").model.args["positions"] == ["res3b1.conv1", "res3b1.conv2"]
    assert t2.row("traj_res3b1_max").model.args["downsample"] == "max"
    tv1 = specs["tvnet:table1"]
    assert [(r.flow_method, r.flow_training) for r in tv1.rows[12:15]] == [
        ("tvnet-1-1-50", "none"), ("tvnet-1-1-50", "u0"), ("tvnet-1-1-50", "all")]
    assert tv1.row("tvl1_5_5_50").flow_method == "tvl1-5-5-50"


def test_recovery_written_where_extraction_lost_structure(specs):
    for key in ("trajectorynet:table1", "trajectorynet:table3", "trajectorynet:table4", "trajectorynet:table5",
                "lgd:table3", "dynamics:table6", "dynamics:table9", "tvnet:table1", "tvnet:table3"):
        assert specs[key].recovery and len(specs[key].recovery) > 200, key
