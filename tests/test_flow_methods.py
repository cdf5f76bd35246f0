"""repro.flow: one interface, one convention (forward flow, pixels, channel 0 = x) for every method."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from repro.flow.methods import OpenCVTVL1, create_flow_method, flow_method_names, to_grey_uint8
from repro.flow.pairs import (
    FlowPair,
    resize_pair,
    stereo_motorcycle_pair,
    synthetic_benchmark_pairs,
    warped_texture_pair,
)
from repro.flow.train import endpoint_error, evaluate_epe, train_tvnet_on_pairs
from repro.models.tvnet import TVNet, save_tvnet

ALL_FIXED = ["tvnet-20", "tvnet-2-2-10", "tvl1", "tvl1-2-2-10", "dis-fast", "dis-medium", "deepflow", "farneback",
             "skimage-tvl1"]



@pytest.fixture(scope="module")
def translation_pair() -> FlowPair:
    """A texture moved by (+1.5 px right, -1.0 px up) between the frames: frame0(x) = frame1(x + u)."""
    texture = np.clip(128 + 60 * np.sin(np.add.outer(np.arange(80) / 5.0, np.arange(100) / 7.0))
                      + 30 * np.cos(np.add.outer(np.arange(80) / 3.3, -np.arange(100) / 4.1)), 0, 255)
    ys, xs = np.mgrid[0:56, 0:72].astype(np.float64)

    def sample(dx: float, dy: float) -> np.ndarray:
        mx, my = (xs + 10 + dx).astype(np.float32), (ys + 10 + dy).astype(np.float32)
        grey = cv2.remap(texture.astype(np.float32), mx, my, cv2.INTER_CUBIC)
        return np.repeat(np.clip(np.rint(grey), 0, 255).astype(np.uint8)[..., None], 3, axis=2)

    u = np.array([1.5, -1.0], np.float32)
    frame1 = sample(0.0, 0.0)
    frame0 = sample(u[0], u[1])  # frame0(x) = T(x + u) = frame1(x + u)
    flow = np.broadcast_to(u, (56, 72, 2)).copy()
    return FlowPair("translation", frame0, frame1, flow)


@pytest.mark.parametrize("name", ALL_FIXED)
def test_every_method_returns_forward_flow_in_pixels_x_first(name, translation_pair):
    method = create_flow_method(name)
    flow = method(translation_pair.frame0, translation_pair.frame1)
    assert flow.shape == (56, 72, 2) and flow.dtype == np.float32
    inner = flow[12:-12, 12:-12].reshape(-1, 2)
    median = np.median(inner, axis=0)
    np.testing.assert_allclose(median, [1.5, -1.0], atol=0.35, err_msg=f"{name}: median flow {median}")


def test_names_and_errors():
    assert create_flow_method("tvnet-50").name == "tvnet-50"
    assert create_flow_method("tvnet-3-1-10").name == "tvnet-3-1-10"
    assert create_flow_method("tvnet-1-1-50").name == "tvnet-50"
    assert create_flow_method("tvl1-5-5-50").name == "tvl1-5-5-50"
    assert "tvl1-Ns-Nw-Ni" in flow_method_names()
    with pytest.raises(ValueError, match="unknown flow method 'nope'"):
        create_flow_method("nope")
    with pytest.raises(ValueError, match="--weights"):
        create_flow_method("dis-fast", weights="x.pt")
    with pytest.raises(ValueError, match="shapes differ"):
        create_flow_method("dis-fast")(np.zeros((8, 8), np.uint8), np.zeros((8, 9), np.uint8))


def test_opencv_tvl1_is_set_to_exact_structure():
    solver = OpenCVTVL1((3, 2, 17))._solver
    assert (solver.getScalesNumber(), solver.getWarpingsNumber(), solver.getInnerIterations()) == (3, 2, 17)
    assert solver.getOuterIterations() == 1 and solver.getMedianFiltering() == 1
    assert solver.getEpsilon() == 0.0 and solver.getScaleStep() == 0.5
    default = OpenCVTVL1()._solver
    assert (default.getInnerIterations(), default.getOuterIterations(), default.getScaleStep()) == (30, 10, 0.8)


def test_grey_conversion_accepts_float_and_grey():
    rgb = np.zeros((4, 5, 3), np.float32)
    rgb[..., 1] = 200.0
    grey = to_grey_uint8(rgb)
    assert grey.dtype == np.uint8 and grey.shape == (4, 5) and abs(int(grey[0, 0]) - round(0.587 * 200)) <= 1
    assert to_grey_uint8(grey[..., None]).shape == (4, 5)


def test_pairs_sources_are_consistent():
    pair = warped_texture_pair(32, 40, seed=1, max_flow=2.0)
    assert np.abs(pair.flow).max() == pytest.approx(2.0, rel=1e-5)
    assert pair.valid.mean() > 0.8
    small = resize_pair(pair, (16, 20))
    np.testing.assert_allclose(np.abs(small.flow).max(), 1.0, rtol=0.2)
    stereo = stereo_motorcycle_pair((50, 74))
    assert stereo.flow.shape == (50, 74, 2) and np.all(stereo.flow[..., 1] == 0)
    assert np.all(stereo.flow[stereo.valid][:, 0] < 0)  # left -> right image: content moves left
    assert 0.85 < stereo.valid.mean() < 0.99
    synth = synthetic_benchmark_pairs((32, 32), count=2)
    assert len(synth) == 2 and synth[0].frame0.shape == (32, 32, 3) and synth[0].flow.shape == (32, 32, 2)


def test_tvnet_batch_equals_single_and_weights_file(tmp_path):
    pairs = [warped_texture_pair(24, 32, seed=s, max_flow=1.0) for s in range(3)]
    method = create_flow_method("tvnet-10", batch_size=2)
    batched = method.batch([p.frame0 for p in pairs], [p.frame1 for p in pairs])
    for pair, flow in zip(pairs, batched):
        np.testing.assert_allclose(flow, method(pair.frame0, pair.frame1), atol=1e-4)
    model = TVNet(1, 1, 10, trainable="u0", image_size=(24, 32))
    with torch.no_grad():
        model.u0.fill_(0.5)
    save_tvnet(model, tmp_path / "w.pt")
    loaded = create_flow_method("tvnet-10", weights=str(tmp_path / "w.pt"))
    assert torch.all(loaded.model.u0 == 0.5)
    with pytest.raises(ValueError, match="1-1-10"):
        create_flow_method("tvnet-20", weights=str(tmp_path / "w.pt"))
    torch.save(model.state_dict(), tmp_path / "sd.pt")  # a plain state_dict also loads
    assert torch.all(create_flow_method("tvnet-10", weights=str(tmp_path / "sd.pt")).model.u0 == 0.5)


def test_training_lowers_the_loss_and_evaluate_epe():
    torch.manual_seed(0)
    pairs = [warped_texture_pair(24, 32, seed=s, max_flow=1.5) for s in range(4)]
    model = TVNet(1, 1, 8, trainable="all", image_size=(24, 32))
    before = evaluate_epe(model, pairs)["mean_epe"]
    history = train_tvnet_on_pairs(model, pairs, iters=25, lr=0.005, batch_size=4, progress=False)
    after = evaluate_epe(model, pairs)["mean_epe"]
    assert len(history["losses"]) == 25
    assert after < before
    result = evaluate_epe("dis-fast", pairs)
    assert result["pairs"] == 4 and set(result["per_pair"]) == {p.name for p in pairs}
    unsupervised = TVNet(1, 1, 8, trainable="all", image_size=(24, 32))
    history = train_tvnet_on_pairs(unsupervised, pairs, iters=5, loss="energy", progress=False)
    assert all(np.isfinite(history["losses"]))
    with pytest.raises(ValueError, match="nothing to train"):
        train_tvnet_on_pairs(TVNet(1, 1, 2), pairs, iters=1, progress=False)


def test_endpoint_error_masks_invalid():
    flow = np.zeros((2, 2, 2))
    target = np.array([[[3, 4], [0, 0]], [[0, 0], [100, 0]]], float)
    valid = np.array([[True, True], [True, False]])
    assert endpoint_error(flow, target, valid) == pytest.approx(5.0 / 3)


# ---------------------------------------------------------------------------- displacement map
@pytest.fixture(scope="module")
def integer_shift_pair() -> FlowPair:
    """A blurred random texture moved by exactly (+2 px right, -1 px up): frame1(x + u) = frame0(x)."""
    rng = np.random.default_rng(0)
    frame0 = cv2.GaussianBlur((rng.random((48, 56, 3)) * 255).astype(np.uint8), (3, 3), 0)
    frame1 = np.roll(frame0, (-1, 2), axis=(0, 1))
    return FlowPair("integer-shift", frame0, frame1, np.broadcast_to(np.float32([2, -1]), (48, 56, 2)).copy())


@pytest.mark.parametrize("name, atol", [("dispmap", 0.02), ("dispmap-wta", 0.0), ("dispmap-s2", 0.15)])
def test_displacement_map_recovers_an_integer_shift_with_the_flow_convention(name, atol, integer_shift_pair):
    """Sign, x/y order and the displacement index of the cost volume, seen from the flow side."""
    pair = integer_shift_pair
    flow = create_flow_method(name)(pair.frame0, pair.frame1)
    assert flow.shape == (48, 56, 2) and flow.dtype == np.float32
    inner = flow[8:-8, 8:-8].reshape(-1, 2).mean(axis=0)
    np.testing.assert_allclose(inner, [2.0, -1.0], atol=atol + 1e-4, err_msg=name)


def test_displacement_map_names_and_the_zero_flow(integer_shift_pair):
    method = create_flow_method("dispmap-wta-s2-d6")
    assert (method.name, method.matcher, method.stride, method.max_disp) == ("dispmap-wta-s2-d6", "wta", 2, 3)
    soft = create_flow_method("dispmap-t0.05")
    assert (soft.matcher, soft.stride, soft.max_disp, soft.temperature) == ("soft", 1, 4, 0.05)
    assert "dispmap[-wta][-sS][-dD][-tT]" in flow_method_names()
    with pytest.raises(ValueError, match="window >= stride"):
        create_flow_method("dispmap-s4-d2")
    zero = create_flow_method("zero")(integer_shift_pair.frame0, integer_shift_pair.frame1)
    assert zero.shape == (48, 56, 2) and not zero.any()


def test_displacement_map_of_a_dynamics_model_is_its_matcher_at_its_conv1_stride():
    from repro.flow.methods import DisplacementMapFlow
    from repro.models.dynamics import DynamicsNet

    model = DynamicsNet(num_classes=3, branches=("static", "motion"), width=0.25, conv1_stride=2, max_disp=2,
                        temperature=0.02)
    method = DisplacementMapFlow.of_head(model.displacement, model.conv1_stride)
    assert (method.matcher, method.stride, method.max_disp, method.temperature) == ("soft", 2, 2, 0.02)
    assert method.name == "dispmap-s2-d4-t0.02"
