"""Rendered tables: labels that cannot mislead (data, chance, stand-ins, no Δ across data)."""
from repro.render import build_table, to_markdown
from repro.spec.loader import default_specs_dir, load_specs
from repro.spec.schema import TableSpec, resolved_config
from repro.standins import chance, data_label, stand_ins


def _specs():
    return load_specs(default_specs_dir(), check_models=False)


def test_stand_ins_are_generated_from_the_paper_protocol_and_what_ran():
    spec = _specs()["trajectorynet:table3"]
    row = spec.row("appearance")
    got = stand_ins(spec, row, "mini")  # nothing recorded: the spec's mini config
    assert got == ["data: synthetic mini benchmark (12 classes) for Something-Something V1",
                   "8×1 frames at 56² (paper: 16×1 frames at 224²)",
                   "width 1/4 (paper: 1)",
                   "24 epochs, Adam lr 0.001, batch 16 (paper: 50 epochs, SGD lr 0.01, batch 64)",
                   "test 1 clips × 1 crops (paper: 7 clips × 10 crops)",
                   "flow: the benchmark's exact flow (paper: TV-L1)",
                   # written in the spec (a config cannot say it)
                   "initialisation: trained from scratch (paper: spatial convolutions initialised from an "
                   "ImageNet-pretrained ResNet-18 (Sec. 4.2))"]
    # a run config that ran otherwise (a smoke run's 2 epochs) is what the table names
    ran = {**resolved_config(row.mini), "epochs": 2}
    assert "2 epochs, Adam lr 0.001, batch 16 (paper: 50 epochs, SGD lr 0.01, batch 64)" in stand_ins(spec, row, "mini", ran)
    assert stand_ins(spec, row, "full") == []  # the paper's protocol departs from nothing


def test_departures_written_in_the_spec_join_the_stand_ins_and_render_under_the_table():
    spec = _specs()["tvnet:table1"]
    row = spec.row("tvnet_50_all")
    got = stand_ins(spec, row, "mini")
    assert any(s.startswith("optimiser: Adam lr 0.005") for s in got)
    assert any(s.startswith("evaluation pairs: trained on 32 synthetic pairs") for s in got)
    assert stand_ins(spec, spec.row("tvl1_50"), "mini")[0] == "data: synthetic mini benchmark (12 classes) for Middlebury"
    md = to_markdown(build_table(spec, {}, scale="mini"))
    assert "**Departures written in the spec:**" in md and "optimiser: Adam lr 0.005" in md


def test_data_labels_and_chance():
    assert data_label({"dataset": "synth", "preset": "mini"}, "mini", "train", "top1") == \
        "mini: synthetic, 12 classes, chance 8.3 %"
    assert data_label({"dataset": "synth", "preset": "mini"}, "mini", "train", "top5") == \
        "mini: synthetic, 12 classes, chance 41.7 %"
    assert data_label({"dataset": "ucf101"}, "full", "train", "top1") == "full: UCF101"
    assert chance("top1", 4) == 25.0 and chance("top5", 4) == 100.0 and chance("epe", 12) is None


def test_no_duplicated_columns_no_none_cells_no_mini_number_under_a_paper_dataset():
    # TrajectoryNet Table 3: the Source column repeated the Method column; the two-stream row's
    # usage printed "None".  TVNet Table 3: mini accuracies must not sit under "UCF101".
    spec: TableSpec = _specs()["trajectorynet:table3"]
    table = build_table(spec, {}, scale="mini")
    assert "Source" not in table.frame.columns
    assert "None" not in set(table.frame["Usage of Traj. Conv."])
    md = to_markdown(_tvnet3 := build_table(_specs()["tvnet:table3"], {}, scale="mini"))
    header = next(line for line in md.splitlines() if line.startswith("| Method"))
    for col in header.split("|"):
        if "reproduced" in col:
            assert "UCF101" not in col and "mini: synthetic" in col, col
    assert not any(c.endswith(" Δ") and "UCF101" in c for c in _tvnet3.frame.columns if "reproduced" in c)
