"""Temporal sampling: dense clips, TSN segments, multi-clip testing."""
from __future__ import annotations

import torch

from repro.data.sampling import clip_span, dense_clip_indices, tsn_segment_indices


def test_dense_test_clip_is_centred_and_strided():
    idx = dense_clip_indices(40, 16, 2, train=False)
    assert idx.shape == (1, 16)
    assert idx[0].tolist() == list(range(4, 36, 2))  # span 32, start (40 - 32) // 2 = 4
    assert clip_span(16, 2) == 32


def test_dense_multi_clip_spreads_evenly():
    idx = dense_clip_indices(100, 8, 1, train=False, num_clips=4)
    starts = idx[:, 0].tolist()
    assert starts == [round(92 * (2 * i + 1) / 8) for i in range(4)] == [12, 34, 58, 80]
    assert (idx[:, 1:] - idx[:, :-1] == 1).all()


def test_dense_train_is_random_but_deterministic_per_generator():
    a = dense_clip_indices(100, 16, 2, train=True, generator=torch.Generator().manual_seed(3))
    b = dense_clip_indices(100, 16, 2, train=True, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    starts = {int(dense_clip_indices(100, 16, 2, train=True, generator=torch.Generator().manual_seed(s))[0, 0]) for s in range(30)}
    assert len(starts) > 10 and min(starts) >= 0 and max(starts) <= 100 - 32


def test_dense_jitter_picks_one_frame_per_window():
    idx = dense_clip_indices(32, 16, 2, train=True, jitter=True, generator=torch.Generator().manual_seed(0))[0]
    windows = idx // 2
    assert windows.tolist() == list(range(16))  # exactly one frame from each pair of neighbours
    assert (idx % 2).unique().numel() == 2  # and not always the same one


def test_short_video_loops():
    idx = dense_clip_indices(5, 8, 1, train=False)
    assert idx[0].tolist() == [0, 1, 2, 3, 4, 0, 1, 2]


def test_tsn_segments():
    test = tsn_segment_indices(30, 3, train=False)
    assert test.tolist() == [5, 15, 25]  # segment centres
    snip = tsn_segment_indices(31, 3, snippet_len=2, train=False)
    assert snip.tolist() == [5, 6, 15, 16, 25, 26]
    g = torch.Generator().manual_seed(1)
    for _ in range(20):
        tr = tsn_segment_indices(30, 3, train=True, generator=g).tolist()
        assert 0 <= tr[0] < 10 <= tr[1] < 20 <= tr[2] < 30
    few = tsn_segment_indices(2, 4, train=True, generator=g)
    assert few.shape == (4,) and int(few.max()) < 2
