"""The trainer's stages: same seed + same threads -> the same weights bit for bit; a run cut
after any epoch and continued by a fresh :class:`~repro.engine.trainer.Trainer` ends where an
uninterrupted one ends."""
from __future__ import annotations

import pytest
import torch

from repro.engine.testing import TinyVideoNet, ToyMotionDataset
from repro.engine.trainer import Trainer, fit, resolve_settings
from repro.spec.schema import RunConfig


def _settings(**overrides):
    cfg = RunConfig(dataset="toy", epochs=3, batch_size=8, lr=0.1, warmup_epochs=0.5, clip_grad=5.0,
                    lr_schedule={"type": "cosine"}, loss_weights={"feature_l2": 0.01})
    return resolve_settings(cfg, seed=7, **overrides)


def _model():
    torch.manual_seed(7)
    return TinyVideoNet(4, width=4, dropout=0.3, aux_loss=True, predicts_flow=True)


def _data():
    return ToyMotionDataset(24, frames=3, size=12, seed=1, with_flow=True), \
        ToyMotionDataset(8, frames=3, size=12, seed=2, train=False, with_flow=True)


def _assert_same_weights(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_two_fits_from_the_same_seed_are_bit_identical(tmp_path):
    runs = []
    for name in ("a", "b"):
        model = _model()
        train, val = _data()
        result = fit(model, train, val, _settings(eval_every=1), tmp_path / name, num_classes=4, progress=False)
        runs.append((model.state_dict(), result))
    (weights_a, a), (weights_b, b) = runs
    _assert_same_weights(weights_a, weights_b)
    assert a.history == b.history and a.metrics == b.metrics
    assert len(a.history) == 3 and "val_top1" in a.history[0] and "epe" in a.metrics  # everything was exercised
    final = torch.load(tmp_path / "a" / "final.pt", weights_only=True)
    _assert_same_weights(final["model"], weights_a)
    assert final["threads"] == 1 and final["history"] == a.history


def test_trainer_stages_continue_a_cut_run_exactly(tmp_path):
    train, val = _data()
    reference_model = _model()
    reference = Trainer(reference_model, train, val, _settings(), tmp_path / "ref", num_classes=4,
                        progress=False).run()

    first = Trainer(_model(), train, val, _settings(), tmp_path / "cut", num_classes=4, progress=False)
    assert first.restore() is False  # nothing to restore yet
    entry = first.train_epoch(0)  # one epoch, then the process "dies"
    assert entry == reference.history[0]
    assert (first.epoch, first.batch) == (1, 0) and (tmp_path / "cut" / "last.pt").is_file()

    model = _model()
    second = Trainer(model, train, val, _settings(), tmp_path / "cut", num_classes=4, progress=False)
    result = second.run()
    assert result.resumed_from == {"epoch": 1, "batch": 0}
    assert result.history == reference.history and result.metrics == reference.metrics
    _assert_same_weights(model.state_dict(), reference_model.state_dict())


def test_a_resumed_run_refuses_other_settings(tmp_path):
    train, val = _data()
    Trainer(_model(), train, val, _settings(), tmp_path, num_classes=4, progress=False).train_epoch(0)
    other = Trainer(_model(), train, val, _settings(lr=0.2), tmp_path, num_classes=4, progress=False)
    with pytest.raises(ValueError, match="different training settings"):
        other.restore()


def test_channels_last_trains_the_same_weights_up_to_float_order(tmp_path):
    """The memory format changes strides and summation order only (repro/engine/memory_format.py)."""
    runs = {}
    for fmt in (True, False):
        model = _model()
        train, val = _data()
        result = fit(model, train, val, _settings(epochs=1, channels_last=fmt), None, num_classes=4, progress=False)
        runs[fmt] = (model, result)
    (cl, cl_result), (plain, plain_result) = runs[True], runs[False]
    conv5d = [p for p in cl.parameters() if p.dim() == 5]
    assert conv5d and all(p.is_contiguous(memory_format=torch.channels_last_3d) for p in conv5d)
    assert all(p.is_contiguous() for p in plain.parameters())
    for (name, a), b in zip(cl.state_dict().items(), plain.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5, msg=name)
    assert cl_result.metrics["top1"] == plain_result.metrics["top1"]
