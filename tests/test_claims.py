from repro.claims import check_claim
from repro.spec.schema import Claim


def _c(op, b, margin=0.0):
    return Claim(id="c", text="t", metric="top1", a="x", op=op, b=b, margin=margin)


def test_claim_statuses():
    vals = {"x": {"top1": 36.0}, "y": {"top1": 35.0}, "z": {}}
    assert check_claim(_c(">", "y"), vals).status == "held"
    assert check_claim(_c("<", "y"), vals).status == "failed"
    assert check_claim(_c(">", "y", margin=1.0), vals).status == "failed"  # 36 > 35 + 1 is false
    assert check_claim(_c(">=", "y", margin=1.0), vals).status == "held"
    assert check_claim(_c(">", 35.5), vals).status == "held"
    r = check_claim(_c(">", "z"), vals)
    assert (r.status, r.a, r.b) == ("not run", 36.0, None)
    assert check_claim(_c("<=", "y", margin=0.5), {"x": {"top1": 34.5}, "y": {"top1": 35.0}}).status == "held"


def test_claim_tolerance_allows_a_negligible_shortfall():
    vals = {"x": {"params": 15.453}, "y": {"params": 15.451}}
    negligible = Claim(id="c", text="t", metric="params", a="x", op="<=", b="y", tolerance=0.05)
    assert check_claim(negligible, vals).status == "held"
    assert check_claim(negligible, {"x": {"params": 15.6}, "y": {"params": 15.451}}).status == "failed"
    strict = Claim(id="c", text="t", metric="params", a="x", op="<=", b="y")
    assert check_claim(strict, vals).status == "failed"
    beaten_within = Claim(id="c", text="t", metric="top1", a="x", op=">", b="y", tolerance=1.0)
    assert check_claim(beaten_within, {"x": {"top1": 34.5}, "y": {"top1": 35.0}}).status == "held"


def test_claim_margin_and_tolerance_are_exclusive_and_non_negative():
    import pytest
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="not both"):
        Claim(id="c", text="t", metric="top1", a="x", op=">", b="y", margin=1.0, tolerance=1.0)
    with pytest.raises(ValidationError):
        Claim(id="c", text="t", metric="top1", a="x", op=">", b="y", margin=-1.0)


def test_a_claim_against_a_cited_row_has_no_reproduced_counterpart():
    # TrajectoryNet Table 8: "on par with C3D" compares our row with a cited number; at mini scale
    # that is "cited" (nothing to reproduce), while a claim between our own unrun rows is "not run".
    from repro.claims import check_claims
    from repro.spec.loader import default_specs_dir, load_specs

    spec = load_specs(default_specs_dir(), check_models=False)["trajectorynet:table8"]
    reproduced = {"s3d_16x1": {"avg_acc": 70.0}, "traj_mn2_16x2": {"avg_acc": 75.0}}
    status = {r.id: r.status for r in check_claims(spec, reproduced)}
    assert status == {"traj-beats-s3d": "not run", "step2-beats-step1": "not run", "on-par-with-c3d": "cited"}
    reproduced["traj_mn2_16x1"] = {"avg_acc": 72.0}
    status = {r.id: r.status for r in check_claims(spec, reproduced)}
    assert status == {"traj-beats-s3d": "held", "step2-beats-step1": "held", "on-par-with-c3d": "cited"}


def test_seed_tally_pairs_seeds_and_needs_two():
    from repro.claims import seed_tally

    claim = _c(">", "y")
    per_seed = {"x": {0: {"top1": 40.0}, 1: {"top1": 30.0}, 2: {"top1": 50.0}},
                "y": {0: {"top1": 35.0}, 1: {"top1": 35.0}}}
    assert seed_tally(claim, per_seed) == (1, 2)  # seed 2 has no partner in y
    assert seed_tally(_c(">", 20.0), per_seed) == (3, 3)  # against a number: every seed of x
    assert seed_tally(claim, {"x": {0: {"top1": 40.0}}, "y": {0: {"top1": 35.0}}}) is None  # one seed decides nothing
    assert seed_tally(claim, {"x": per_seed["x"]}) is None


def test_a_rendered_table_says_how_many_seeds_a_mean_is_and_on_how_many_a_claim_held(tmp_path):
    # TrajectoryNet Table 5's real spec: a claim that holds on the means of two seeds but on one
    # seed only must say so, and each mean must say it is one.
    from repro.render import build_table, to_markdown
    from repro.results import load_results, provenance, write_result
    from repro.spec.loader import default_specs_dir, load_specs

    spec = load_specs(default_specs_dir(), check_models=False)["trajectorynet:table5"]
    runs = {"s3d_step2": {0: 60.0, 1: 72.0}, "traj_mn17_unsup_step2": {0: 75.0, 1: 70.0}}
    for row, seeds in runs.items():
        per_seed = {str(s): {"top1": v, "top5": 99.0} for s, v in seeds.items()}
        mean = {"top1": sum(seeds.values()) / 2, "top5": 99.0}
        write_result(tmp_path, scale="mini", paper="trajectorynet", table=5, row=row, job="train", metrics=mean,
                     provenance=provenance(scale="mini", seed=[0, 1], spec_hash=None, data="synth mini"),
                     details={"per_seed": per_seed})
    table = build_table(spec, load_results(tmp_path), scale="mini")
    md = to_markdown(table)
    assert md.count("mini scale: synth mini; mean of 2 seeds") == 2
    assert "| held (72.50 vs 66.00; on 1 of 2 seeds) |" in md  # top-1: 75 > 60 but 70 < 72
    assert "| failed (99.00 vs 99.00; on 0 of 2 seeds) |" in md  # top-5: equal, so ">" fails on each
    assert table.rows[0]["reproduced_per_seed"] == {"0": {"top1": 60.0, "top5": 99.0},
                                                    "1": {"top1": 72.0, "top5": 99.0}}
