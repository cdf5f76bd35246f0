"""Profiler: parameter and MAC counts against torchvision's reference figures, MAC rules, latency."""
from __future__ import annotations

import json
import math

import pytest
import timm
import torch
import torch.nn as nn
import torch.nn.functional as F

from repro.profile import (
    EXTRA_OP_HANDLES,
    LATENCY_BACKENDS,
    ZERO_COST_OPS,
    UncountedOpsWarning,
    count_macs,
    count_params,
    measure_latency,
    profile,
    register_latency_backend,
)
from repro.registry import create_model

# torchvision 0.29 documentation (GMACs at 1x3x16x112x112, or 1x3x224x224 for 2-D nets).
_VIDEO_REFERENCE = {"r2plus1d_18": (31_505_325, 40.52), "r3d_18": (33_371_472, 40.70), "mc3_18": (11_695_440, 43.34)}
_IMAGE_REFERENCE = {"resnet18": (11_689_512, 1.81), "resnet50": (25_557_032, 4.09)}


def _within(value: float, reference: float, rel: float) -> bool:
    return abs(value - reference) <= rel * reference


@pytest.mark.parametrize("name", sorted(_VIDEO_REFERENCE))
def test_video_nets_match_torchvision_reference(name: str) -> None:
    params, gmacs = _VIDEO_REFERENCE[name]
    result = profile(name, (1, 3, 16, 112, 112))
    assert result["params"] == params
    # torchvision's figure is conv + linear MACs, as is our headline `macs` for these nets;
    # BN, ReLU, sums and pooling come on top in `macs_all`.
    assert _within(result["gmacs_dense"], gmacs, 0.005), result["gmacs_dense"]
    assert _within(result["gmacs"], gmacs, 0.005), result["gmacs"]
    assert result["macs"] == result["dense_macs"]
    assert result["macs_all"] > result["macs"]
    assert _within(result["macs_all"] / 1e9, gmacs, 0.01), result["macs_all"]
    assert result["uncounted_ops"] == {}
    assert result["macs_by_operator"]["batch_norm"] > 0 and result["handled_ops"]["add"] > 0


@pytest.mark.parametrize("arch", sorted(_IMAGE_REFERENCE))
def test_image_resnets_and_c2d_match_torchvision_reference(arch: str) -> None:
    params, gmacs = _IMAGE_REFERENCE[arch]
    timm_result = profile(timm.create_model(arch), (1, 3, 224, 224))
    c2d_result = profile(f"c2d_{arch}", (1, 3, 224, 224), num_classes=1000)  # 4-D input = one frame
    for result in (timm_result, c2d_result):
        assert result["params"] == params
        assert _within(result["gmacs_dense"], gmacs, 0.005), result["gmacs_dense"]
        assert _within(result["gmacs"], gmacs, 0.005), result["gmacs"]
        assert result["uncounted_ops"] == {}
    assert c2d_result["macs"] == timm_result["macs"]


class _Ops(nn.Module):
    def forward(self, x: torch.Tensor, grid2d: torch.Tensor, grid3d: torch.Tensor) -> list[torch.Tensor]:
        return [
            x.softmax(1),
            x + 1.0,
            F.max_pool3d(x, (1, 3, 3), 1, (0, 1, 1)),
            F.avg_pool3d(x, 3, 1, 1),
            F.adaptive_avg_pool3d(x, 1),
            F.grid_sample(x[:, :, 0], grid2d, align_corners=False),
            F.grid_sample(x, grid3d, align_corners=False),
            torch.fft.rfft(x, dim=-1),
            torch.fft.fft2(x),
            F.interpolate(x, scale_factor=2, mode="trilinear"),
        ]


def test_mac_rules_for_ops_fvcore_skips() -> None:
    x = torch.randn(1, 4, 3, 8, 8)  # 768 elements
    grid2d = torch.zeros(1, 5, 5, 2)
    grid3d = torch.zeros(1, 2, 3, 3, 3)
    report = count_macs(_Ops(), (x, grid2d, grid3d))
    n = x.numel()
    expected = {
        "softmax": 3 * n,
        "add": n,
        "max_pool3d": 9 * n,
        "avg_pool3d": 27 * n,
        "adaptive_avg_pool3d": n,  # per input element
        "grid_sampler": 4 * (4 * 5 * 5) + 8 * (4 * 2 * 3 * 3),  # bilinear 4-D, trilinear 5-D
        "fft_rfft": round(4 * 3 * 8 * 1.25 * 8 * 3),  # 96 transforms of 8 points
        "fft_fft2": round(4 * 3 * 2.5 * 64 * 6),  # 12 transforms of 8x8 points
        "upsample_trilinear3d": 8 * 8 * n,
    }
    assert report.by_operator == expected
    assert report.handled == expected
    assert report.macs == sum(expected.values()) and report.dense_macs == 0
    assert report.uncounted == {}
    assert report.zero_cost["select"] == 1  # x[:, :, 0]


class _AntiAliased(nn.Module):
    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [
            F.interpolate(x, size=(8, 8), mode="bilinear", align_corners=False, antialias=True),  # shrink 2x
            F.interpolate(x, size=(4, 16), mode="bicubic", align_corners=False, antialias=True),  # 4x, 1x
        ]


def test_anti_aliased_resampling_counts_its_widened_filter() -> None:
    # TVNet's image pyramid (repro.models.tvnet.resize_image): the filter of a 2x shrink spans
    # 2 x 2 input pixels per dim for bilinear, 4 x s for bicubic.
    report = count_macs(_AntiAliased(), (torch.randn(1, 2, 16, 16),))
    assert report.by_operator == {"_upsample_bilinear2d_aa": (4 * 4) * (2 * 8 * 8),
                                  "_upsample_bicubic2d_aa": (16 * 4) * (2 * 4 * 16)}
    assert report.uncounted == {}
    assert report.model_macs == report.macs  # resampling is a headline (model) op


class _Opaque(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return x * 2

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return grad * 2


class _WithOpaqueOp(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _Opaque.apply(self.conv(x))


def test_unsupported_ops_are_reported_not_dropped() -> None:
    x = torch.randn(1, 3, 6, 6)
    with pytest.warns(UncountedOpsWarning, match="_Opaque"):
        report = count_macs(_WithOpaqueOp(), x)
    assert report.uncounted == {"prim::PythonOp._Opaque": 1}
    assert report.macs == report.by_operator["conv"] == 8 * 3 * 9 * 16
    assert "NOT COUNTED" in report.summary() and "_Opaque" in report.summary()
    assert report.by_module == {"conv": 8 * 3 * 9 * 16}


def test_every_op_fvcore_ignores_has_a_rule_or_is_declared_free() -> None:
    from fvcore.nn.jit_analysis import _IGNORED_OPS  # private: the list fvcore drops silently

    assert set(_IGNORED_OPS) <= set(EXTRA_OP_HANDLES) | ZERO_COST_OPS
    assert not set(EXTRA_OP_HANDLES) & ZERO_COST_OPS


def test_count_params_counts_shared_tensors_once() -> None:
    shared = nn.Linear(3, 4)
    assert count_params(nn.Sequential(shared, nn.ReLU(), shared)) == 16
    assert count_params(nn.BatchNorm2d(5)) == 10  # running stats are buffers


def test_count_macs_restores_training_mode() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4)).train()
    count_macs(model, torch.randn(2, 3, 4, 4))
    assert model.training


def test_measure_latency_report_and_thread_restore() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv3d(3, 8, 3, padding=1), nn.ReLU())
    before = torch.get_num_threads()
    report = measure_latency(model, torch.randn(1, 3, 4, 16, 16), warmup=1, repeats=5, threads=1)
    assert torch.get_num_threads() == before
    assert report.threads == 1 and report.repeats == 5 and len(report.times_ms) == 5
    assert report.backend == "eager" and report.warmup == 1
    assert min(report.times_ms) <= report.p10 <= report.median_ms <= report.p90 <= max(report.times_ms)
    assert report.iqr_ms >= 0
    assert json.loads(json.dumps(report.to_dict()))["median_ms"] == report.median_ms


@pytest.mark.parametrize("backend", ["channels_last_3d", "onnxruntime"])
def test_latency_backends_run_the_same_function(backend: str) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv3d(3, 8, 3, padding=1), nn.BatchNorm3d(8), nn.ReLU(), nn.AdaptiveAvgPool3d(1)).eval()
    x = torch.randn(1, 3, 4, 16, 16)
    with torch.inference_mode():
        run = LATENCY_BACKENDS[backend](model, (x,), 1)
        out = run()
        expected = model(x)
    out = torch.as_tensor(out[0] if isinstance(out, list) else out)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-4)
    assert measure_latency(model, x, warmup=0, repeats=2, threads=1, backend=backend).backend == backend


def test_custom_latency_backend_plugs_in() -> None:
    calls = []

    @register_latency_backend("test_counting")
    def counting(model: nn.Module, inputs: tuple, threads: int):
        return lambda: calls.append(threads)

    try:
        report = measure_latency(nn.Identity(), torch.zeros(1), warmup=2, repeats=3, threads=1, backend="test_counting")
    finally:
        del LATENCY_BACKENDS["test_counting"]
    assert calls == [1] * 5 and report.backend == "test_counting"
    with pytest.raises(ValueError, match="eager"):
        measure_latency(nn.Identity(), torch.zeros(1), backend="no_such_backend")


def test_profile_returns_json_ready_dict() -> None:
    result = profile("r3d_18", (1, 3, 4, 32, 32), latency=True, warmup=0, repeats=2, threads=1, num_classes=10)
    assert json.loads(json.dumps(result)) == result
    assert result["params"] == count_params(create_model("r3d_18", num_classes=10))
    assert result["input_shape"] == [1, 3, 4, 32, 32]
    assert math.isclose(result["gflops"], 2 * result["macs"] / 1e9)
    assert math.isclose(result["gmacs"], result["macs"] / 1e9)
    assert result["backend"] == "eager" and result["threads"] == 1 and result["latency_ms"] > 0
    for key in ("latency_iqr_ms", "latency_p10_ms", "latency_p90_ms", "uncounted_ops", "dense_macs"):
        assert key in result


def test_profile_argument_errors() -> None:
    with pytest.raises(ValueError, match="input_shape"):
        profile(nn.Linear(2, 2))
    with pytest.raises(TypeError, match="num_classes"):
        profile(nn.Linear(2, 2), (1, 2), num_classes=3)
