"""The backend registry: every available backend computes the model's function, unavailable ones
say why instead of failing, several backends are timed in one interleaved run, and the profile
job reports latency keys per backend (``latency_s@onnxruntime``)."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from repro.deploy.backends import (BACKENDS, BackendUnavailable, availability, prepare_backend, register_backend,
                                   resolve_backends, time_backends)


class _Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv3d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        return self.fc(torch.relu(self.conv(x)).mean(dim=(2, 3, 4)))


def _x():
    return torch.randn(2, 3, 4, 8, 8, generator=torch.Generator().manual_seed(1))


def _as_tensor(out):
    return torch.as_tensor(out[0] if isinstance(out, list) else out)  # ONNX Runtime returns [array]


def test_registry_names_every_backend_and_why_tensorrt_cannot_run_without_a_gpu():
    assert list(BACKENDS)[:5] == ["eager", "channels_last_3d", "compile", "onnxruntime", "tensorrt"]
    why = availability()
    assert why["eager"] is None and why["channels_last_3d"] is None and why["onnxruntime"] is None
    if not torch.cuda.is_available():
        assert "GPU" in why["tensorrt"]
        with pytest.raises(BackendUnavailable, match="tensorrt.*GPU"):
            prepare_backend("tensorrt", _Tiny(), (_x(),), 1)


@pytest.mark.parametrize("name", ["channels_last_3d", "onnxruntime"])
def test_backends_compute_the_eager_function(name):
    model, x = _Tiny().eval(), _x()
    with torch.inference_mode():
        expected = model(x)
        got = _as_tensor(prepare_backend(name, model, (x,), 1)())
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.slow
def test_compile_backend_computes_the_eager_function():
    if availability(["compile"])["compile"] is not None:
        pytest.skip(availability(["compile"])["compile"])
    model, x = _Tiny().eval(), _x()
    with torch.inference_mode():
        torch.testing.assert_close(prepare_backend("compile", model, (x,), 1)(), model(x), atol=1e-5, rtol=1e-5)


def test_time_backends_interleaves_and_reports_errors_per_backend():
    calls = []

    @register_backend("test_a")
    def _a(model, inputs, threads):
        return lambda: calls.append("a")

    @register_backend("test_b")
    def _b(model, inputs, threads):
        return lambda: calls.append("b")

    register_backend("test_missing", check=lambda: "no such hardware")(lambda m, i, t: (lambda: None))
    try:
        out = time_backends(_Tiny(), _x(), ["test_a", "test_missing", "test_b"], threads=1, warmup=1, repeats=3)
    finally:
        for name in ("test_a", "test_b", "test_missing"):
            del BACKENDS[name]
    assert list(out) == ["test_a", "test_missing", "test_b"]
    assert out["test_missing"] == {"error": "backend 'test_missing' unavailable: no such hardware"}
    assert calls == ["a", "b"] + ["a", "b"] * 3  # warm-ups, then one round per repeat, A B A B ...
    for name in ("test_a", "test_b"):
        assert len(out[name]["times_ms"]) == 3 and out[name]["repeats"] == 3 and out[name]["threads"] == 1
        assert out[name]["latency_min_ms"] <= out[name]["latency_ms"] <= out[name]["latency_p90_ms"]


def test_a_backend_failing_to_prepare_is_an_error_entry_not_a_crash():
    @register_backend("test_broken")
    def _broken(model, inputs, threads):
        raise RuntimeError("exporter said no\nsecond line")

    try:
        out = time_backends(_Tiny(), _x(), "eager,test_broken", threads=1, warmup=0, repeats=2)
    finally:
        del BACKENDS["test_broken"]
    assert out["test_broken"] == {"error": "RuntimeError: exporter said no"}
    assert out["eager"]["latency_ms"] > 0


def test_resolve_backends():
    assert resolve_backends("all") == list(BACKENDS)
    assert resolve_backends("eager, onnxruntime") == ["eager", "onnxruntime"]
    with pytest.raises(ValueError, match="'nope' unknown"):
        resolve_backends("eager,nope")


def test_profile_all_backends_side_by_side():
    from repro.profile import profile

    out = profile(_Tiny(), (1, 3, 4, 8, 8), latency=True, backend="eager,channels_last_3d,onnxruntime,tensorrt",
                  warmup=0, repeats=2, threads=1)
    assert set(out["backends"]) == {"eager", "channels_last_3d", "onnxruntime", "tensorrt"}
    for name in ("eager", "channels_last_3d", "onnxruntime"):
        assert out["backends"][name]["latency_ms"] > 0 and "times_ms" not in out["backends"][name]
    if not torch.cuda.is_available():
        assert "GPU" in out["backends"]["tensorrt"]["error"]


def test_profile_job_reports_latency_per_backend(tmp_path, monkeypatch):
    import repro.profile as prof_mod
    from repro.jobs.base import JobContext
    from repro.jobs.profile import run_profile, split_backend
    from repro.spec.loader import load_specs

    assert split_backend("fps@compile") == ("fps", "compile") and split_backend("fps") == ("fps", "eager")
    spec = load_specs()["trajectorynet:table3"]
    row = spec.row("appearance")
    asked = {}

    def fake_profile(*args, **kwargs):
        asked.update(kwargs)
        return {"params": 10, "macs": 20, "gmacs": 2e-8, "gflops": 4e-8,
                "backends": {"eager": {"latency_ms": 50.0, "latency_p10_ms": 48.0, "latency_p90_ms": 55.0},
                             "onnxruntime": {"latency_ms": 25.0, "latency_p10_ms": 20.0, "latency_p90_ms": 40.0},
                             "tensorrt": {"error": "no GPU"}}}

    monkeypatch.setattr(prof_mod, "profile", fake_profile)
    ctx = JobContext(spec=spec, row=row, scale="full", results_dir=tmp_path, work_dir=tmp_path, data_dir=tmp_path,
                     wanted=["latency_s", "latency_s@onnxruntime", "fps@onnxruntime", "latency_s@tensorrt"])
    out = run_profile(ctx)
    assert asked["backend"] == ["eager", "onnxruntime", "tensorrt"]  # one interleaved run
    assert out.metrics["latency_s"] == pytest.approx(0.05)
    assert out.metrics["latency_s@onnxruntime"] == pytest.approx(0.025)
    assert out.metrics["fps@onnxruntime"] == pytest.approx(40.0 * row.input_shape[0])
    assert "latency_s@tensorrt" not in out.metrics and out.details["backend_errors"] == {"tensorrt": "no GPU"}
    # every latency key's 10th-90th percentile range over the repeats: the claims' interval
    spread = out.details["spread"]
    assert spread["latency_s"] == pytest.approx([0.048, 0.055])
    assert spread["latency_s@onnxruntime"] == pytest.approx([0.020, 0.040])
    n = row.input_shape[0]
    assert spread["fps@onnxruntime"] == pytest.approx([1e3 / 40.0 * n, 1e3 / 20.0 * n])  # lo from the p90 time
    assert "part_timing" not in out.details and not any(k.endswith("@tensorrt") for k in spread)


@pytest.mark.gpu
def test_tensorrt_backend_matches_eager_on_a_trajectory_conv():
    pytest.importorskip("tensorrt")
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    from repro.ops.trajectory_conv import TrajectoryConv3d

    class Demo(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = TrajectoryConv3d(8, 8, 3)

        def forward(self, x, flow_fwd, flow_bwd):
            return self.conv(x, flow_fwd, flow_bwd)

    torch.manual_seed(0)
    model = Demo().eval()
    inputs = (torch.randn(1, 8, 4, 8, 8), torch.randn(1, 2, 4, 8, 8), torch.randn(1, 2, 4, 8, 8))
    outputs = prepare_backend("tensorrt", model, inputs, 1)()
    (got,) = outputs.values()
    with torch.no_grad():
        torch.testing.assert_close(got.cpu(), model(*inputs), atol=1e-3, rtol=1e-3)


def test_embedding_bag_macs_are_counted():
    """The trajectory conv's weighted gathers: indices x embedding dim multiply-adds."""
    from repro.profile import count_macs

    class Bag(nn.Module):
        def forward(self, table, rows, weights):
            return torch.nn.functional.embedding_bag(rows, table, per_sample_weights=weights, mode="sum")

    report = count_macs(Bag(), (torch.randn(10, 6), torch.randint(0, 10, (4, 3)), torch.rand(4, 3)))
    assert report.uncounted == {} and report.by_operator["embedding_bag"] == 4 * 3 * 6


def test_profile_times_a_list_of_backends_side_by_side():
    """``profile(backend=[...])`` (the table jobs' several-backend case) times them in one run."""
    from repro.profile import profile

    out = profile("s3d_resnet18", (1, 3, 4, 32, 32), latency=True, backend=["eager", "channels_last_3d"],
                  warmup=0, repeats=1, threads=1, num_classes=5)
    assert set(out["backends"]) == {"eager", "channels_last_3d"}
    assert all("latency_ms" in timing for timing in out["backends"].values())


def test_interleaved_rounds_rotate_so_no_runner_always_follows_the_same_one():
    from repro.deploy.backends import interleaved_ms

    calls: list[str] = []
    runners = {name: (lambda name=name: calls.append(name)) for name in "abc"}
    times = interleaved_ms(runners, repeats=3, rotate=True)
    assert "".join(calls) == "abcbcacab" and all(len(v) == 3 for v in times.values())
    calls.clear()
    interleaved_ms(runners, repeats=2)
    assert "".join(calls) == "abcabc"  # plain round-robin by default
