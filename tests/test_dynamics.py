"""Disentangling Dynamics (CVPR 2018) branches and fusion: shapes of every registered variant,
gradients per branch, score fusion, TSN consensus, temporal pooling (clamped kernels, reference),
the warping direction, WTA vs soft matching, Table 4 inputs, profiling with every op counted."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from repro.layers.temporal_pool import pooled_frames, temporal_max_pool, temporal_max_pool_reference
from repro.models.bninception import BNInception
from repro.models.dynamics import (
    DisplacementHead,
    BRANCHES,
    DynamicsNet,
    consecutive_pairs,
    fuse_scores,
    load_dynamics_pretrained,
    resize_flow,
    segment_consensus,
    stack_pairs,
    warped_difference,
    warped_difference_reference,
)
from repro.profile import count_macs, count_params, profile
from repro.registry import create_model, list_models

MINI = dict(num_classes=5, width=0.25, num_frames=4)  # 64x64 inputs, T = 4
VARIANTS = ["dynamics_static_bninception", "dynamics_motion_bninception", "dynamics_change_bninception",
            "dynamics_rgb_diff_bninception", "dynamics_static_motion_bninception", "dynamics_full_bninception"]


def _video(n=2, t=4, size=64, seed=0) -> torch.Tensor:
    return torch.randn(n, 3, t, size, size, generator=torch.Generator().manual_seed(seed))


def _model(seed=0, **kw) -> DynamicsNet:
    torch.manual_seed(seed)
    return DynamicsNet(**{**MINI, **kw})


def _shifted(dx: int, dy: int, n=2, c=8, h=12, w=14, seed=0):
    """f1 = f0 moved by (dx, dy) (f1[y+dy, x+dx] = f0[y, x]); fresh noise where nothing moved in."""
    g = torch.Generator().manual_seed(seed)
    f0, f1 = torch.randn(n, c, h, w, generator=g), torch.randn(n, c, h, w, generator=g)
    f1[:, :, max(0, dy):h + min(0, dy), max(0, dx):w + min(0, dx)] = f0[:, :, max(0, -dy):h - max(0, dy),
                                                                      max(0, -dx):w - max(0, dx)]
    return f0, f1


def _interior(x: torch.Tensor, m: int) -> torch.Tensor:
    return x[..., m:-m, m:-m]


# ------------------------------------------------------------------------------ registry, shapes
def test_every_variant_is_registered_and_returns_logits() -> None:
    assert set(VARIANTS) <= set(list_models("dynamics_*", paper="dynamics"))
    video = _video()
    for name in VARIANTS:
        torch.manual_seed(0)
        model = create_model(name, **MINI)
        out = model(video)
        assert out.shape == (2, 5) and torch.isfinite(out).all(), name
    full = create_model("dynamics_full_bninception", **MINI)
    assert full.branches == ("static", "motion", "change")
    assert full.conv1.conv1_7x7_s2.out_channels == 16  # 64 * 0.25: the shared low-level features
    assert full.motion.net.conv2_3x3_reduce.in_channels == 2  # default "pairs": each pair's map replaces conv1's
    stack = create_model("dynamics_full_bninception", **MINI, motion_layout="stack")
    assert stack.motion.conv1_7x7_s2.in_channels == 2 * (4 - 1)  # "stack": T-1 maps stacked on channels


def test_conv1_stride_sets_the_map_size() -> None:
    video = _video(n=1)
    for stride, side in ((2, 32), (1, 64)):  # Table 3's "112x112" vs "224x224" map at mini scale
        model = _model(conv1_stride=stride, branches=("motion",)).eval()
        with torch.no_grad():
            disp = model.compute(video, what="displacement")
            assert disp.shape == (3, 2, side, side)  # (N*(T-1), 2, h, w)
            assert model(video).shape == (1, 5)


def test_external_flow_variants_need_and_use_flow_fwd() -> None:
    video, flow = _video(), torch.randn(2, 2, 4, 64, 64)
    tvl1 = _model(branches=("static", "motion"), motion_input="flow")  # Table 6 "Static + TV-L1"
    warp = _model(branches=("change",), change_input="warped_rgb_diff", warp_flow="flow")  # Table 4 TV-L1 row
    for model in (tvl1, warp):
        assert model(video, flow).shape == (2, 5)
        assert len(model.example_inputs((2, 3, 4, 64, 64))) == 3  # video, flow_fwd, flow_bwd (the contract)
        with pytest.raises(ValueError, match="flow_fwd"):
            model(video)
    assert not hasattr(warp, "conv1")  # warped RGB by an external flow needs no conv1 features


def test_per_pair_motion_layout_runs_and_trains_through_the_maps() -> None:
    model = _model(branches=("motion",), motion_layout="pairs", conv1_stride=2)
    assert model.motion.net.conv2_3x3_reduce.in_channels == 2  # each pair's (x, y) map replaces conv1's output
    out = model(_video())
    assert out.shape == (2, 5)
    out.square().sum().backward()
    assert model.conv1.conv1_7x7_s2.weight.grad.abs().sum() > 0
    flow = _model(branches=("motion",), motion_layout="pairs", motion_input="flow", conv1_stride=2)
    assert flow(_video(), torch.randn(2, 2, 4, 64, 64)).shape == (2, 5)  # flow resampled to the 32x32 grid


def test_bad_arguments_raise_one_line_errors() -> None:
    for kw, field in ((dict(branches=("optical",)), "branches"), (dict(matcher="hard"), "matcher"),
                      (dict(temporal_pool="mid"), "temporal_pool"), (dict(change_input="rgb"), "change_input"),
                      (dict(fusion="max"), "fusion"), (dict(num_frames=1), "num_frames"),
                      (dict(motion_layout="grid"), "motion_layout"), (dict(cost_impl="cuda"), "cost_impl")):
        with pytest.raises(ValueError, match=field):
            DynamicsNet(**{**MINI, **kw})
    assert _model(branches="static, motion").branches == ("static", "motion")  # spec / CLI string form
    model = _model(branches=("static",))
    with pytest.raises(ValueError, match=r"T=1x4"):
        model(_video(t=5))


# ------------------------------------------------------------------------------ gradients, fusion
def test_gradients_reach_every_branch_and_the_shared_conv1() -> None:
    model = _model(conv1_stride=2)
    logits = model.branch_logits(_video())
    for branch, out in logits.items():
        model.zero_grad()
        out.square().sum().backward(retain_graph=True)
        own = [p.grad for p in getattr(model, branch).parameters() if p.requires_grad]
        assert all(g is not None for g in own) and sum(g.abs().sum() for g in own) > 0, branch
        assert model.conv1.conv1_7x7_s2.weight.grad.abs().sum() > 0, branch  # shared features get gradient
        others = [p.grad for b in model.branches if b != branch for p in getattr(model, b).parameters()]
        assert all(g is None or g.abs().sum() == 0 for g in others), branch


def test_fusion_is_the_mean_of_branch_scores() -> None:
    video = _video()
    model = _model().eval()
    with torch.no_grad():
        branch = model.branch_logits(video)
        assert len(branch) == 3
        torch.testing.assert_close(model(video), torch.stack(list(branch.values())).mean(0))
        model.fusion = "softmax"  # averaged probabilities, returned as logits
        probs = torch.stack([b.softmax(-1) for b in branch.values()]).mean(0)
        torch.testing.assert_close(model(video).softmax(-1), probs)
        torch.testing.assert_close(model(video).exp().sum(-1), torch.ones(2))
    assert fuse_scores([torch.ones(2, 3)]).equal(torch.ones(2, 3))


def test_segment_consensus_equals_averaging_per_segment_scores() -> None:
    k = 3
    video = _video(n=2, t=4 * k, size=32 * 2, seed=1)
    tsn = _model(num_segments=k, branches=("static", "motion"), conv1_stride=2).eval()
    single = _model(num_segments=1, branches=("static", "motion"), conv1_stride=2).eval()
    single.load_state_dict(tsn.state_dict())
    with torch.no_grad():
        per_segment = torch.stack([single(video[:, :, 4 * s: 4 * s + 4]) for s in range(k)], dim=1)  # (N, K, C)
        torch.testing.assert_close(tsn(video), per_segment.mean(1), rtol=1e-4, atol=1e-5)
    scores = torch.arange(12.0).reshape(6, 2)
    torch.testing.assert_close(segment_consensus(scores, 3), torch.tensor([[2.0, 3.0], [8.0, 9.0]]))


# ------------------------------------------------------------------------------ temporal pooling
@pytest.mark.parametrize("frames", [1, 2, 3, 4, 7, 8, 16])
def test_temporal_max_pool_matches_loops_with_clamped_kernel(frames: int) -> None:
    x = torch.randn(2 * frames, 3, 4, 5, dtype=torch.float64, requires_grad=True)
    fast, t_fast = temporal_max_pool(x, frames)
    ref, t_ref = temporal_max_pool_reference(x, frames)
    assert t_fast == t_ref == pooled_frames(frames) == {1: 1, 2: 1, 3: 2, 4: 2, 7: 4, 8: 4, 16: 8}[frames]
    torch.testing.assert_close(fast, ref)
    g = torch.randn_like(fast)
    torch.testing.assert_close(torch.autograd.grad(fast, x, g)[0], torch.autograd.grad(ref, x, g)[0])
    if frames == 1:
        assert fast is x  # kernel clamped to 1: nothing pooled
    if frames == 2:
        torch.testing.assert_close(fast, torch.maximum(x[0::2], x[1::2]))


def _static_by_hand(model: DynamicsNet, video: torch.Tensor, pool_after=()) -> torch.Tensor:
    """Static branch written out: conv1 per frame, BN-Inception stages, max over all frames where asked."""
    net, n, t = model.static.net, video.shape[0], video.shape[2]
    x = model.conv1(video.transpose(1, 2).flatten(0, 1))
    start = "conv1"
    for end in pool_after:
        x = net.forward_stages(x, start, end)
        x = x.reshape(n, -1, *x.shape[1:]).amax(1)  # T <= 2: one window
        start = end
    x = F.adaptive_avg_pool2d(net.forward_stages(x, start, None), 1).flatten(1)
    return net.fc(x.reshape(n, -1, x.shape[1]).amax(1))


def test_static_branch_clamps_for_one_and_two_frames() -> None:
    for frames, pools in ((1, ()), (2, ("pool2",))):  # T=2 -> 1 after pool2; later pools are no-ops
        video = _video(t=frames)
        model = _model(num_frames=frames, branches=("static",)).eval()
        with torch.no_grad():
            torch.testing.assert_close(model(video), _static_by_hand(model, video, pools), rtol=1e-4, atol=1e-5)
        late = _model(num_frames=frames, branches=("static",), temporal_pool="late").eval()
        with torch.no_grad():
            torch.testing.assert_close(late(video), _static_by_hand(late, video), rtol=1e-4, atol=1e-5)


def test_static_schedule_for_16_frames_and_time_reversal() -> None:
    model = _model(num_frames=8, branches=("static",)).eval()
    video = _video(n=1, t=8)
    with torch.no_grad():
        # Kernel-2 max pools group frames (0,1),(2,3),...: reversing the order keeps the groups (brief §A.3).
        torch.testing.assert_close(model(video), model(video.flip(2)), rtol=1e-5, atol=1e-6)
        late = _model(num_frames=16, branches=("static",), temporal_pool="late").eval()
        gradual = _model(num_frames=16, branches=("static",)).eval()
        v16 = _video(n=1, t=16)
        assert late(v16).shape == gradual(v16).shape == (1, 5)


# ------------------------------------------------------------------------------ warping, matching
@pytest.mark.parametrize("dx,dy", [(2, 0), (-1, 3), (0, -2)])
def test_warp_direction_cancels_a_known_shift(dx: int, dy: int) -> None:
    f0, f1 = _shifted(dx, dy)
    shift = torch.tensor([float(dx), float(dy)]).view(1, 2, 1, 1).expand(2, 2, 12, 14)
    diff = warped_difference(f0, f1, shift)  # f1 warped back to frame t minus f0
    assert _interior(diff, 3).abs().max() < 1e-4
    wrong = warped_difference(f0, f1, -shift)  # the other direction does not cancel
    assert _interior(wrong, 3).abs().mean() > 0.5
    assert (warped_difference(f0, f1, torch.zeros_like(shift)) - (f1 - f0)).abs().max() < 1e-4  # V=0: F_{t+1}-F_t


def test_warped_difference_matches_the_bilinear_formula() -> None:
    g = torch.Generator().manual_seed(3)
    f0, f1 = (torch.randn(2, 3, 5, 6, generator=g, dtype=torch.float64) for _ in range(2))
    disp = (torch.rand(2, 2, 5, 6, generator=g, dtype=torch.float64) - 0.5) * 5  # sub-pixel, some outside
    f1.requires_grad_(True)
    disp.requires_grad_(True)
    fast, ref = warped_difference(f0, f1, disp), warped_difference_reference(f0, f1, disp)
    torch.testing.assert_close(fast, ref)
    g_out = torch.randn_like(fast)
    for a, b in zip(torch.autograd.grad(fast, (f1, disp), g_out), torch.autograd.grad(ref, (f1, disp), g_out)):
        torch.testing.assert_close(a, b)


def test_model_displacement_and_warp_cancel_a_shift_end_to_end() -> None:
    f0, f1 = _shifted(2, -1, c=16, h=16, w=16)
    head = DisplacementHead(max_disp=3, temperature=0.01)
    disp = head(f0, f1)
    assert (_interior(disp, 4) - torch.tensor([2.0, -1.0]).view(1, 2, 1, 1)).abs().max() < 1e-3
    assert _interior(warped_difference(f0, f1, disp), 4).abs().max() < 1e-2


def test_model_recovers_per_segment_motion_from_a_translating_video() -> None:
    """Frames t -> t+1 move by (+2, -1) px in segment 0 and (-1, +2) px in segment 1: the model's
    displacement maps (conv1 stride 1, random weights) find each shift, channel 0 = x, and no pair
    straddles the segment boundary."""
    g = torch.Generator().manual_seed(0)
    texture = F.avg_pool2d(torch.rand(1, 3, 96, 96, generator=g), 3, 1, 1)  # smooth but distinctive
    shifts = [(2, -1), (-1, 2)]
    frames = []
    for dx, dy in shifts:
        for t in range(4):
            frames.append(torch.roll(texture, shifts=(dy * t, dx * t), dims=(2, 3))[..., 16:80, 16:80])
    video = torch.stack(frames, dim=2)  # (1, 3, 8, 64, 64)
    # Untrained conv1 features of a smooth texture have cosines near 1 over the whole window: only a
    # small tau makes the soft-argmax reach the full shift (at tau=0.01 it finds about half of it).
    model = _model(branches=("motion",), num_segments=2, conv1_stride=1, max_disp=3, temperature=0.001).eval()
    with torch.no_grad():
        disp = model.compute(video, what="displacement")  # (2 segments x 3 pairs, 2, 64, 64)
    for seg, (dx, dy) in enumerate(shifts):
        inner = _interior(disp[3 * seg: 3 * seg + 3], 8)
        assert (inner[:, 0].median() - dx).abs() < 0.1 and (inner[:, 1].median() - dy).abs() < 0.1, (seg, dx, dy)


def test_wta_and_soft_matchers_both_run() -> None:
    video = _video()
    soft, wta = _model(branches=("motion",)), _model(branches=("motion",), matcher="wta")
    wta.load_state_dict(soft.state_dict())
    for model in (soft, wta):
        model.zero_grad()
        out = model(video)
        assert out.shape == (2, 5)
        out.sum().backward()
        assert model.motion.net.conv2_3x3_reduce.weight.grad.abs().sum() > 0
    disp = wta.compute(video, what="displacement")
    assert disp.equal(disp.round()) and disp.abs().max() <= 4 and not disp.requires_grad  # integer, detached
    assert wta.conv1.conv1_7x7_s2.weight.grad is None  # WTA passes no gradient to conv1 (brief §D.6)
    assert soft.conv1.conv1_7x7_s2.weight.grad.abs().sum() > 0
    with torch.no_grad():  # the soft map at tau -> 0 approaches the WTA map where the match is clear
        assert not soft.compute(video, what="displacement").equal(disp)


def test_table4_inputs_are_differences_of_the_right_things() -> None:
    video = _video(n=1)
    frames = video.transpose(1, 2).flatten(0, 1)
    f0, f1 = consecutive_pairs(frames, 4)
    rgb = _model(branches=("change",), change_input="rgb_diff")
    torch.testing.assert_close(rgb._change_input(frames, None, None, None), f1 - f0)
    warp = _model(branches=("change",), change_input="warped_rgb_diff", warp_flow="flow")
    torch.testing.assert_close(warp._change_input(frames, None, None, torch.zeros(3, 2, 64, 64)), f1 - f0)
    feat = _model(branches=("change",), change_input="feature_diff", conv1_stride=2)
    with torch.no_grad():
        feats = feat.conv1(frames)
        g0, g1 = consecutive_pairs(feats, 4)
        torch.testing.assert_close(feat._change_input(frames, feats, None, None), g1 - g0)
    # Stride-2 displacement maps are upsampled and scaled to warp RGB frames.
    small = torch.ones(3, 2, 32, 32)
    torch.testing.assert_close(resize_flow(small, (64, 64)), torch.full((3, 2, 64, 64), 2.0))
    assert stack_pairs(torch.arange(12.0).reshape(6, 2, 1, 1), 3)[1].flatten().tolist() == [6, 7, 8, 9, 10, 11]


# ------------------------------------------------------------------------------ profiling, weights
def test_every_part_profiles_with_no_uncounted_op_and_the_split_adds_up() -> None:
    """Table 9's split through the profile job's hook: the shared displacement map (conv1 + cost
    volume + soft-argmax) plus each branch's own layers is the whole model, in MACs and in values."""
    model = _model(conv1_stride=2, max_disp=1).eval()  # a 3x3 window keeps the traces short
    video = _video(n=1)
    parts = model.profile_parts((video,))
    assert set(parts) == {"conv1", "displacement", "static", "motion", "change", "static_path", "motion_path",
                          "change_path", "full", "shared", "own"}
    macs = {}
    for name, (piece, inputs) in parts.items():
        report = count_macs(piece, inputs)
        assert report.uncounted == {}, (name, report.uncounted)
        macs[name] = report.model_macs
    assert macs["displacement"] > macs["conv1"] > 0 and parts["shared"][0] is parts["displacement"][0]
    assert macs["full"] == macs["displacement"] + macs["own"] == macs["displacement"] + sum(macs[b] for b in BRANCHES)
    assert macs["motion_path"] == macs["displacement"] + macs["motion"]
    assert macs["static_path"] == macs["conv1"] + macs["static"]
    assert count_params(parts["static_path"][0]) == count_params(model.conv1) + count_params(model.static)
    with torch.no_grad():  # "own" on the shared tensors gives the model's output; each path its branch's
        torch.testing.assert_close(parts["own"][0](*parts["own"][1]), model(video))
        torch.testing.assert_close(parts["motion_path"][0](video), model.compute(video, what="motion"))
    static = _model(branches=("static",)).eval()
    static_parts = static.profile_parts((video,))
    assert "displacement" not in static_parts and "shared" not in static_parts  # Table 9's static: nothing shared
    assert static_parts["own"][0] is static
    wta = _model(branches=("motion",), matcher="wta", max_disp=1).eval()
    assert count_macs(wta, (video,)).uncounted == {}
    out = profile("dynamics_full_bninception", (1, 3, 4, 64, 64), max_disp=1, **MINI, conv1_stride=2)  # public entry
    assert out["uncounted_ops"] == {} and out["params"] == count_params(model) and out["macs"] == macs["full"]


def test_flow_fed_model_declares_flow_inputs_and_profiles_its_parts() -> None:
    model = _model(branches=("change",), change_input="warped_rgb_diff", warp_flow="flow").eval()
    assert model.inputs == ("video", "flow_fwd", "flow_bwd") and _model().inputs == ("video",)
    inputs = model.example_inputs((1, 3, 4, 64, 64))
    assert [tuple(x.shape) for x in inputs] == [(1, 3, 4, 64, 64), (1, 2, 4, 64, 64), (1, 2, 4, 64, 64)]
    parts = model.profile_parts(inputs)
    assert "displacement" not in parts and "conv1" not in parts  # RGB differences warped by the given flow
    with torch.no_grad():
        torch.testing.assert_close(parts["own"][0](*parts["own"][1]), model(*inputs))


def test_static_branch_costs_no_parameters_and_pooling_saves_macs() -> None:
    """Table 1's exact column: 3D pooling adds no parameter (BN-Inception at 101 classes: 10,373,765,
    the brief's anchor); late pooling costs 8 single-frame passes, gradual pooling less."""
    static = create_model("dynamics_static_bninception", num_classes=101)
    assert count_params(static) == count_params(BNInception(num_classes=101)) == 10_373_765
    macs = {}
    for pool, frames in (("gradual", 1), ("late", 8), ("gradual", 8)):
        model = _model(branches=("static",), num_frames=frames, temporal_pool=pool, num_classes=12)
        macs[pool, frames] = count_macs(model, (_video(n=1, t=frames),)).dense_macs
    fc = model.static.net.fc.in_features * 12
    assert macs["late", 8] - fc == 8 * (macs["gradual", 1] - fc)
    assert macs["gradual", 1] < macs["gradual", 8] < macs["late", 8]


def test_partial_bn_leaves_only_each_networks_first_bn_training() -> None:
    model = _model(partial_bn=True, motion_layout="stack").train()
    training = sorted(name for name, m in model.named_modules() if isinstance(m, torch.nn.BatchNorm2d) and m.training)
    assert training == ["conv1.conv1_7x7_s2_bn", "motion.conv1_7x7_s2_bn"]  # shared conv1, motion net's own conv1
    pairs = _model(partial_bn=True).train()  # the per-pair motion net's input layer is conv2_3x3_reduce
    training = sorted(name for name, m in pairs.named_modules() if isinstance(m, torch.nn.BatchNorm2d) and m.training)
    assert training == ["conv1.conv1_7x7_s2_bn", "motion.net.conv2_3x3_reduce_bn"]
    assert not model.static.net.inception_3a_1x1_bn.weight.requires_grad


def test_pretrained_backbone_initialises_every_branch(tmp_path) -> None:
    torch.manual_seed(1)
    backbone = BNInception(num_classes=1000, width=0.25)
    path = tmp_path / "bn_inception.pth"
    torch.save(backbone.state_dict(), path)
    model = _model(motion_layout="stack")
    loaded = load_dynamics_pretrained(model, path)
    assert "conv1.conv1_7x7_s2.weight" in loaded and not any(".fc." in k for k in loaded)
    assert model.conv1.conv1_7x7_s2.weight.equal(backbone.conv1_7x7_s2.weight)
    assert model.change.net.inception_5b_1x1.weight.equal(backbone.inception_5b_1x1.weight)
    rgb_mean = backbone.conv1_7x7_s2.weight.mean(1, keepdim=True)  # cross-modality init of the 6-channel stack
    assert torch.allclose(model.motion.conv1_7x7_s2.weight, rgb_mean.expand(-1, 6, -1, -1))
    pairs = _model(branches=("motion",), motion_layout="pairs")
    load_dynamics_pretrained(pairs, path)
    reduce = backbone.conv2_3x3_reduce.weight.mean(1, keepdim=True).expand(-1, 2, -1, -1)
    assert torch.allclose(pairs.motion.net.conv2_3x3_reduce.weight, reduce)
    with pytest.raises(ValueError, match="shape"):
        load_dynamics_pretrained(_model(width=0.5), path)


def test_table9_profile_job_measures_every_column_in_one_run(tmp_path) -> None:
    """Table 9's spec through the profile job at a small input: the overall row's per-part MACs add
    up to the model's, the ratio columns are formed, and the static row has nothing shared."""
    from repro.jobs import JobContext
    from repro.jobs.profile import run_profile
    from repro.spec.loader import load_specs

    spec = load_specs()["dynamics:table9"]
    wanted = [m.measure.split(":", 1)[1] for m in spec.metrics]
    out = {}
    for row_id in ("overall", "static"):
        row = spec.row(row_id)
        small = row.model.model_copy(update={"args": {**row.model.args, "width": 0.25, "num_frames": 2, "max_disp": 1}})
        row = row.model_copy(update={"model": small, "input_shape": [1, 3, 2, 32, 32]})
        ctx = JobContext(spec=spec, row=row, scale="full", wanted=wanted, results_dir=tmp_path, work_dir=tmp_path,
                         data_dir=tmp_path, threads=1)
        result = run_profile(ctx)
        out[row_id] = result.metrics
        assert set(wanted) <= set(out[row_id])
        # every time of the row from one interleaved run, each with its 10th-90th percentile range
        assert result.details["part_timing"]["threads"] == 1 and "latency_ms" not in result.details
        assert "part_ms_per_frame:full" in result.details["spread"]
    full = out["overall"]
    assert full["part_gmacs:own"] + full["part_gmacs:shared"] == pytest.approx(full["gmacs"])
    assert 0 < full["part_macs_ratio:displacement/full"] < 1 and full["part_time_ratio:displacement/full"] > 0
    assert full["part_time_ratio:motion/static"] > 0 and full["part_time_ratio:change/motion"] > 0
    assert full["part_fps:full"] == pytest.approx(1e3 / full["part_ms_per_frame:full"])
    static = out["static"]
    assert static["part_ms_per_frame:shared"] == 0.0 and static["part_gmacs:own"] == pytest.approx(static["gmacs"])
    assert static["part_time_ratio:displacement/full"] == 0.0  # not formed for a model without a displacement map


@pytest.mark.parametrize("change_input", ["warped_feature_diff", "warped_rgb_diff"])
def test_the_fast_displacement_path_trains_the_model_as_the_plain_ops(monkeypatch, change_input) -> None:
    """The model's displacement maps (:func:`cost_volume_displacement_frames`: fused volume +
    soft-argmax, each frame normalised once) give the logits and every gradient of the plain per-pair
    composition (:func:`cosine_cost_volume` then :func:`soft_argmax_displacement`), in float64 and
    channels-last as the trainer runs."""
    from repro.engine.memory_format import channels_last, to_channels_last
    from repro.ops.cost_volume import cosine_cost_volume, soft_argmax_displacement

    def plain(self, f0, f1=None, num_frames=None):
        f0, f1 = consecutive_pairs(f0, num_frames) if f1 is None else (f0, f1)
        return soft_argmax_displacement(cosine_cost_volume(f0, f1, self.max_disp), self.max_disp, self.temperature)

    model = to_channels_last(_model(branches=BRANCHES, conv1_stride=1, change_input=change_input).double())
    video = channels_last(_video(size=32).double())
    results = []
    for forward in (DisplacementHead.forward, plain):
        monkeypatch.setattr(DisplacementHead, "forward", forward)
        model.zero_grad()
        logits = model(video)
        logits.square().sum().backward()
        results.append([logits.detach()] + [p.grad.clone() for p in model.parameters() if p.grad is not None])
    assert len(results[0]) == len(results[1]) > 100
    for fast, ref in zip(*results):
        torch.testing.assert_close(fast, ref, rtol=1e-9, atol=1e-10)
