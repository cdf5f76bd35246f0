import pytest
from pydantic import ValidationError

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
    # TrajectoryNet Table 8: "on par with C3D" compares our row with a cited number: "n/a" at any
    # scale, while a claim between our own unrun rows is "not run".
    from repro.claims import Side, verdicts
    from repro.spec.loader import default_specs_dir, load_specs

    spec = load_specs(default_specs_dir(), check_models=False)["trajectorynet:table8"]
    side = lambda v: {"avg_acc": Side(v, per_seed={0: v, 1: v + 1, 2: v + 2}, code="c1")}  # noqa: E731
    sides = {"s3d_16x1": side(70.0), "traj_mn2_16x2": side(75.0)}
    status = {r.id: r.status for r in verdicts(spec, sides)}
    assert status == {"traj-beats-s3d": "not run", "step2-beats-step1": "not run", "on-par-with-c3d": "n/a"}


# --- verdicts on reproduced numbers ------------------------------------------------------------
def _seeded(values, code="c1"):
    from repro.claims import Side

    return Side(sum(values) / len(values), per_seed=dict(enumerate(values)), code=code)


def test_t_interval_matches_a_hand_computation():
    from repro.claims import t_interval

    # diffs 3, 4, 5: mean 4, s = 1, n = 3, t(0.975, 2) = 4.302653; half width 4.302653 / sqrt(3) = 2.484138
    mean, lo, hi = t_interval([3.0, 4.0, 5.0])
    assert mean == 4.0 and abs(lo - 1.515862) < 1e-6 and abs(hi - 6.484138) < 1e-6
    # diffs 2, 4, 6: s = 2, half width 4.968275
    _, lo, hi = t_interval([2.0, 4.0, 6.0])
    assert abs(lo + 0.968275) < 1e-6 and abs(hi - 8.968275) < 1e-6


def test_median_interval_takes_the_binomial_order_statistics():
    from repro.claims import median_interval

    # n = 21: P(Bin(21, 1/2) <= 5) = 0.0133 <= 0.025 < P(<= 6) = 0.0392 -> ranks 6 and 16 (tables)
    median, lo, hi = median_interval([float(v) for v in range(21, 0, -1)])
    assert (median, lo, hi) == (11.0, 6.0, 16.0)
    # n = 10: ranks 2 and 9; n = 3 is too few for 95 %: the whole range
    assert median_interval([float(v) for v in range(1, 11)]) == (5.5, 2.0, 9.0)
    assert median_interval([3.0, 1.0, 2.0]) == (2.0, 1.0, 3.0)


def test_verdict_held_failed_inconclusive_from_paired_seeds():
    from repro.claims import verdict

    b = _seeded([50.0, 60.0, 70.0])  # seed-to-seed spread larger than the effect: pairing removes it
    held = verdict(_c(">", "y", margin=1.0), _seeded([53.0, 64.0, 75.0]), b)  # paired diffs 3, 4, 5
    assert held.status == "held"
    d = held.detail
    assert (d["seeds"], d["paired"], d["same_code"], d["margin"]) == (3, True, True, 1.0)
    assert abs(d["diff"] - 4.0) < 1e-9 and abs(d["ci"][0] - 1.515862) < 1e-6 and "t-interval" in d["method"]
    assert verdict(_c(">", "y", margin=7.0), _seeded([53.0, 64.0, 75.0]), b).status == "failed"  # hi 6.48 < 7
    assert verdict(_c(">", "y"), _seeded([52.0, 64.0, 76.0]), b).status == "inconclusive"  # diffs 2, 4, 6
    # "<" is oriented as b - a > margin: a lower EPE by 3..5 holds
    assert verdict(_c("<", "y"), _seeded([47.0, 56.0, 65.0]), b).status == "held"
    # unpaired means would hide it: the same a against another seed order is inconclusive
    assert verdict(_c(">", "y", margin=1.0), _seeded([75.0, 53.0, 64.0]), b).status == "inconclusive"


def test_fewer_than_three_seeds_or_other_code_is_never_decided():
    from repro.claims import verdict

    two = verdict(_c(">", "y"), _seeded([90.0, 91.0]), _seeded([10.0, 11.0]))
    assert two.status == "inconclusive" and two.detail["reason"] == "need >= 3" and two.detail["seeds"] == 2
    shared = verdict(_c(">", "y"), _seeded([90.0, 91.0, 92.0]), _seeded([10.0, 11.0]))  # seed 2 has no pair
    assert shared.status == "inconclusive" and shared.detail["seeds"] == 2
    stale = verdict(_c(">", "y"), _seeded([90.0, 91.0, 92.0]), _seeded([10.0, 11.0, 12.0], code="c2"))
    assert stale.status == "stale" and not stale.detail["same_code"] and "re-run" in stale.detail["reason"]
    unknown = verdict(_c(">", "y"), _seeded([90.0, 91.0, 92.0], code=None), _seeded([10.0, 11.0, 12.0]))
    assert unknown.status == "stale"
    assert verdict(_c(">", "y"), None, _seeded([1.0, 2.0, 3.0])).status == "not run"


def test_ratio_claim_follows_the_measurement():
    # TrajectoryNet Table 6: "less than 10 % overhead" is traj / s3d < 1.10; measured +22.8 % fails,
    # on point values and on latency spreads (p10-p90 over repeats) that do not reach 1.10.
    from repro.claims import Side, check_claim, verdict

    claim = Claim(id="c", text="t", metric="forward_s", form="ratio", a="traj", op="<", b="s3d", ratio=1.10)
    assert check_claim(claim, {"traj": {"forward_s": 0.426}, "s3d": {"forward_s": 0.390}}).status == "held"
    assert check_claim(claim, {"traj": {"forward_s": 0.791}, "s3d": {"forward_s": 0.644}}).status == "failed"
    traj = Side(0.791, spread=(0.779, 0.810), code="c", seeded=False)
    s3d = Side(0.644, spread=(0.630, 0.660), code="c", seeded=False)
    r = verdict(claim, traj, s3d)
    assert r.status == "failed"
    # diff = 1 - a / b, margin = 1 - 1.10; interval over the corners of both spreads
    assert abs(r.detail["diff"] - (1 - 0.791 / 0.644)) < 1e-12 and abs(r.detail["margin"] + 0.10) < 1e-12
    assert abs(r.detail["ci"][0] - (1 - 0.810 / 0.630)) < 1e-12 and abs(r.detail["ci"][1] - (1 - 0.779 / 0.660)) < 1e-12
    wide = verdict(claim, Side(0.70, spread=(0.60, 0.80), code="c", seeded=False), s3d)  # 0.91 .. 1.27
    assert wide.status == "inconclusive"


def test_within_claim_is_an_equivalence_test():
    from repro.claims import Side, check_claim, verdict

    claim = Claim(id="c", text="t", metric="params", form="within", a="x", b="y", tolerance=0.05)
    assert check_claim(claim, {"x": {"params": 15.453}, "y": {"params": 15.451}}).status == "held"
    assert check_claim(claim, {"x": {"params": 15.40}, "y": {"params": 15.451}}).status == "failed"  # |d| 0.051
    exact = verdict(claim, Side(15.453, code="c", seeded=False), Side(15.451, code="c", seeded=False))
    assert exact.status == "held" and exact.detail["method"].startswith("exact")
    # seeded: the interval of a - b inside [-tol, tol] holds, wholly outside fails, across the edge is open
    assert verdict(claim, _seeded([1.00, 1.01, 1.02]), _seeded([1.00, 1.00, 1.01])).status == "held"
    assert verdict(claim, _seeded([1.20, 1.21, 1.22]), _seeded([1.00, 1.00, 1.01])).status == "failed"
    assert verdict(claim, _seeded([1.00, 1.10, 1.00]), _seeded([1.00, 1.00, 1.00])).status == "inconclusive"
    with pytest.raises(ValidationError, match="within"):
        Claim(id="c", text="t", metric="p", form="within", a="x", op="<", b="y", tolerance=0.05)
    with pytest.raises(ValidationError, match="ratio"):
        Claim(id="c", text="t", metric="p", form="ratio", a="x", op="<", b="y")


def test_table6_overhead_is_a_ratio_claim_in_the_spec():
    from repro.spec.loader import default_specs_dir, load_specs

    spec = load_specs(default_specs_dir(), check_models=False)["trajectorynet:table6"]
    (claim,) = [c for c in spec.claims if c.form == "ratio"]
    assert (claim.a, claim.op, claim.b, claim.ratio) == ("traj_tvl1", "<", "s3d", 1.10)


def test_a_rendered_table_gives_each_verdict_its_interval_and_names_its_data(tmp_path):
    # TrajectoryNet Table 5's real spec with 3 paired seeds from one code version: the Markdown
    # shows the difference and its interval; the JSON keeps reproduced + reproduced_detail; the
    # reproduced column names the synthetic data and chance, never the paper's dataset; no Δ.
    from repro.render import build_table, to_markdown
    from repro.results import load_results, provenance, write_result
    from repro.spec.loader import default_specs_dir, load_specs

    spec = load_specs(default_specs_dir(), check_models=False)["trajectorynet:table5"]
    runs = {"s3d_step2": [60.0, 70.0, 65.0], "traj_mn17_unsup_step2": [64.0, 73.0, 70.0]}
    for row, seeds in runs.items():
        per_seed = {str(s): {"top1": v, "top5": 99.0} for s, v in enumerate(seeds)}
        mean = {"top1": sum(seeds) / 3, "top5": 99.0}
        prov = provenance(scale="mini", seed=[0, 1, 2], spec_hash=None, data="synth mini")
        prov["code"] = "same-code"
        write_result(tmp_path, scale="mini", paper="trajectorynet", table=5, row=row, job="train", metrics=mean,
                     provenance=prov, details={"per_seed": per_seed, "run_config": {
                         "dataset": "synth", "preset": "mini", "frames": 8, "step": 1, "size": 56, "epochs": 24,
                         "optimizer": "adam", "lr": 0.001, "batch_size": 16, "model_args": {"width": 0.25}}})
    table = build_table(spec, load_results(tmp_path), scale="mini")
    claims = {c["id"]: c for c in table.claims_json()}
    top1 = claims["traj-beats-s3d-step2-top1"]  # paired diffs 4, 3, 5
    d = top1["reproduced_detail"]
    assert top1["reproduced"] == "held" and d["paired"] and d["same_code"] and abs(d["diff"] - 4.0) < 1e-9
    assert set(d) >= {"diff", "ci", "margin", "seeds", "paired", "same_code", "method"}
    md = to_markdown(table)
    assert "**held** (diff +4.00 ± 2.48 [+1.52, +6.48] vs margin 0.00; 3 paired seeds)" in md
    assert "mini: synthetic, 12 classes, chance 8.3 %" in md and "Top-1 Acc. Δ" not in md
    assert "width 1/4 (paper: 1)" in md and "24 epochs, Adam lr 0.001, batch 16" in md


def test_seeds_needed_is_where_the_t_interval_stops_containing_the_margin():
    from repro.claims import seeds_needed, verdict

    # diffs 2, 4, 6: mean 4, s = 2; half width t(n-1) * 2 / sqrt(n): n=3 4.97, n=4 3.18, n=5 2.48
    # -> the interval clears 0 (gap 4) from n = 4 on, and clears a margin of 1.0 (gap 3) from n = 5 on
    assert seeds_needed([2.0, 4.0, 6.0], 0.0) == 4
    assert seeds_needed([2.0, 4.0, 6.0], 1.0) == 5
    assert seeds_needed([-1.0, 1.0, 0.0], 0.0) is None  # the mean sits on the margin
    assert seeds_needed([0.5, 0.5, 0.5], 0.0) == 3  # no spread: already decided
    assert seeds_needed([1.0, 3.0, 2.0], (-0.5, 0.5)) is not None  # within: the nearer tolerance bound
    r = verdict(_c(">", "y"), _seeded([52.0, 64.0, 76.0]), _seeded([50.0, 60.0, 70.0]))
    assert r.status == "inconclusive" and r.detail["seeds_needed"] == 4


def test_verdicts_command_counts_every_claim_per_table(tmp_path, capsys):
    import json

    from repro.cli import main

    assert main(["verdicts", "--paper", "trajectorynet", "--results", str(tmp_path), "--format", "json"]) == 0
    claims = json.loads(capsys.readouterr().out)
    assert claims and {c["paper"] for c in claims} == {"trajectorynet"}
    assert all(c["reproduced"] == "not run" or c["reproduced"] == "n/a" for c in claims)  # no results here
    assert main(["verdicts", "--paper", "trajectorynet", "--results", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("| table | held | failed | inconclusive | stale | not run | n/a |")
    assert "| trajectorynet 3 | 0 | 0 | 0 | 0 |" in out


def test_a_result_measured_under_an_older_recipe_is_shown_but_never_compared(tmp_path):
    # A stored result whose spec_hash is not the row's current freshness key (the spec's recipe or
    # the built-in benchmark changed since) keeps its number in the table but its claims read stale.
    from repro.render import build_table
    from repro.results import load_results, provenance, write_result
    from repro.spec.loader import default_specs_dir, load_specs

    spec = load_specs(default_specs_dir(), check_models=False)["trajectorynet:table5"]
    for row, seeds in {"s3d_step2": [60.0, 70.0, 65.0], "traj_mn17_unsup_step2": [64.0, 73.0, 70.0]}.items():
        prov = provenance(scale="mini", seed=[0, 1, 2], spec_hash="an-old-recipe", data="synth mini")
        prov["code"] = "same-code"
        write_result(tmp_path, scale="mini", paper="trajectorynet", table=5, row=row, job="train",
                     metrics={"top1": sum(seeds) / 3, "top5": 99.0}, provenance=prov,
                     details={"per_seed": {str(s): {"top1": v, "top5": 99.0} for s, v in enumerate(seeds)}})
    table = build_table(spec, load_results(tmp_path), scale="mini")
    claim = next(c for c in table.claims_json() if c["id"] == "traj-beats-s3d-step2-top1")
    assert claim["reproduced"] == "stale" and "earlier recipe or data" in claim["reproduced_detail"]["reason"]
    row = next(r for r in table.rows if r["id"] == "s3d_step2")
    assert row["reproduced"]["top1"] == 65.0 and "out of date" in row["status"]


def test_dynamics_table9_time_ratio_claims_read_the_interleaved_runs_spread(tmp_path):
    # Dynamics Table 9: the ratio columns of one interleaved run (one measurement, no seeds) carry
    # their 10th-90th percentile range over the rounds in details.spread; the claim's interval is that
    # range (not a point, as an exact MAC count would be), and a spread straddling the bound is open.
    from repro.render import build_table
    from repro.results import load_results, provenance, write_result
    from repro.spec.loader import default_specs_dir, load_specs

    spec = load_specs(default_specs_dir(), check_models=False)["dynamics:table9"]
    claims = {c.id: c for c in spec.claims}
    assert claims["dispmap-dominates-time"].metric == "disp_share" and claims["dispmap-dominates-time"].b == 0.5
    metrics = {"part_time_ratio:displacement/full": 0.55, "part_time_ratio:motion/static": 0.9,
               "part_time_ratio:change/motion": 1.3, "part_macs_ratio:displacement/full": 0.05,
               "part_fps:full": 10.0, "part_ms_per_frame:full": 100.0}
    spread = {"part_time_ratio:displacement/full": [0.52, 0.58], "part_time_ratio:motion/static": [0.8, 1.1],
              "part_time_ratio:change/motion": [1.2, 1.4], "part_fps:full": [9.0, 11.0]}
    prov = provenance(scale="full", seed=0, spec_hash=None, data="full-scale architecture")
    prov["code"] = "same-code"
    write_result(tmp_path, scale="full", paper="dynamics", table=9, row="overall", job="profile", metrics=metrics,
                 provenance=prov, details={"spread": spread})
    table = build_table(spec, load_results(tmp_path), scale="full")
    got = {c["id"]: c for c in table.claims_json()}
    share = got["dispmap-dominates-time"]
    assert share["reproduced"] == "held" and share["reproduced_detail"]["ci"] == pytest.approx([0.02, 0.08])
    assert "10th-90th" in share["reproduced_detail"]["method"]
    assert got["motion-own-slower-than-static"]["reproduced"] == "inconclusive"  # 0.8 .. 1.1 straddles 1
    assert got["change-own-slowest"]["reproduced"] == "held"
    assert got["real-time-over-40fps"]["reproduced"] == "failed"  # 9 .. 11 FPS on this machine


def test_dynamics_table3_resolution_speedup_is_a_ratio_claim():
    from repro.spec.loader import default_specs_dir, load_specs

    spec = load_specs(default_specs_dir(), check_models=False)["dynamics:table3"]
    claim = {c.id: c for c in spec.claims}["map-112-over-3x-faster"]
    assert (claim.form, claim.a, claim.op, claim.b, claim.ratio) == ("ratio", "disp_map_112", ">", "disp_map_224", 3.0)


def test_a_timing_without_its_spread_is_never_decided_as_if_exact():
    from repro.claims import Side, verdict
    from repro.render import is_timed

    assert is_timed("latency_s@onnxruntime") and is_timed("part_time_ratio:motion/static") and not is_timed("params_m")
    claim = _c(">", "y")
    r = verdict(claim, Side(0.9, seeded=False, code="c", timed=True), Side(0.8, seeded=False, code="c", timed=True))
    assert r.status == "inconclusive" and "spread" in r.detail["reason"]
    exact = verdict(claim, Side(16.0, seeded=False, code="c"), Side(15.0, seeded=False, code="c"))
    assert exact.status == "held" and exact.detail["method"].startswith("exact")


def test_two_rows_timings_are_unpaired_runs_and_say_so(tmp_path):
    # TrajectoryNet Table 6: each row's profile job times it in its own run, minutes apart; the
    # interval reads each run's 10th-90th percentile range (details.spread, written by the profile
    # job for every latency key and backend), states that the two runs are not paired, and decides
    # only beyond RUN_DRIFT: drift between the runs is not in it.
    from repro.claims import UNPAIRED_RUNS
    from repro.jobs.profile import latency_spread
    from repro.render import build_table, to_markdown
    from repro.results import load_results, provenance, write_result
    from repro.spec.loader import default_specs_dir, load_specs

    spec = load_specs(default_specs_dir(), check_models=False)["trajectorynet:table6"]
    shape = [1, 3, 16, 224, 224]
    timed = {"s3d": (440.0, 430.0, 450.0), "traj_tvl1": (460.0, 455.0, 470.0), "traj_mn17": (1500.0, 1450.0, 1600.0)}
    for row, (ms, p10, p90) in timed.items():
        prov = provenance(scale="full", seed=0, spec_hash=None, data="full-scale architecture")
        prov["code"] = "same-code"
        metrics, spread = {}, {}
        for suffix in ("", "@compile", "@onnxruntime"):
            metrics.update({f"latency_s{suffix}": ms / 1e3})
            spread.update(latency_spread(p10, p90, shape, suffix))
        write_result(tmp_path, scale="full", paper="trajectorynet", table=6, row=row, job="profile",
                     metrics=metrics, provenance=prov, details={"spread": spread})
    table = build_table(spec, load_results(tmp_path), scale="full")
    got = {c["id"]: c for c in table.claims_json()}
    overhead = got["traj-overhead-under-10pct"]
    d = overhead["reproduced_detail"]
    # 470 / 430 = 1.093 < 1.10 even at the worst corner, and still not decided
    assert overhead["reproduced"] == "inconclusive" and "separate runs" in d["reason"]
    assert d["drift_ci"][0] < -0.1 < d["drift_ci"][1]
    assert d["paired"] is False and d["method"] == UNPAIRED_RUNS
    assert d["ci"] == pytest.approx([1 - 470 / 430, 1 - 455 / 450])
    assert got["traj-slower-than-s3d"]["reproduced"] == "inconclusive"  # 460 vs 440: within the drift
    assert got["motionnet-adds-time"]["reproduced"] == "held"  # 1450 x 0.75 > 470 x 1.25: beyond it
    assert "unpaired runs" in to_markdown(table)
