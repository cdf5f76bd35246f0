"""flowbench: EPE, data-term error and speed of every flow method on the same frames, in one run.

Measures (per method, per data set, per resolution):

* **EPE** -- average end-point error, TVNet Eq. (14), over pixels with known ground truth
  (occlusions / unknown flow masked), averaged over the pairs of a data set.
* **rho error** -- the data term where no ground truth is needed (TVNet Table 2's "flow error",
  "we apply the term rho(u) (Eq. 1) instead of End-Point-Error").  Precisely::

      rho_err(u) = mean_{x in V} | I1(x + u(x)) - I0(x) |

  with ``I0``, ``I1`` the greyscale frames (luma 0.299 R + 0.587 G + 0.114 B) in grey levels
  [0, 255] *as given* (no normalisation, no smoothing, identical for every method),
  ``I1(x + u)`` the exact (non-linearised) warp by bilinear interpolation (Eq. 10), and ``V`` the
  pixels whose ``x + u(x)`` lies inside the frame (a point leaving the frame has no observation).
  This is ``|rho(u)|`` of Eq. (1)/(2) without the weight lambda.  The paper does not state its
  intensity scale or averaging, so only the ranking, not the values, compares with Table 2.
  The fraction of pixels in ``V`` is reported as ``inside``.
* **FPS** -- pairs per second of the method's own call (no file I/O, frames already decoded),
  after one untimed warm-up call per method and resolution.  Methods are run round-robin on each
  pair, so that load changes on a shared machine hit all methods alike.  ``--batch N`` adds a
  batched row for every TVNet method (pairs of one size stacked N at a time).
"""
from __future__ import annotations

import math
import statistics
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import torch
from tqdm import tqdm

from repro.flow.methods import FlowMethod, TVNetFlow, create_flow_method
from repro.flow.pairs import FlowPair, resize_pair
from repro.flow.train import endpoint_error
from repro.ops.tvl1 import warp_bilinear

__all__ = ["DEFAULT_METHODS", "photometric_error", "BenchRow", "run_flowbench", "format_table"]

#: Every method, as TVNet Table 2 plus the Table 1 TV-L1 setting and the other peers.
DEFAULT_METHODS = ("tvnet-50", "tvl1", "tvl1-5-5-50", "dis-fast", "dis-medium", "deepflow", "farneback", "skimage-tvl1")
_LUMA = np.array([0.299, 0.587, 0.114])


def _grey(frame: np.ndarray) -> np.ndarray:
    frame = np.asarray(frame, dtype=np.float64)
    return frame @ _LUMA if frame.ndim == 3 and frame.shape[2] == 3 else frame.reshape(frame.shape[:2])


def photometric_error(frame0: np.ndarray, frame1: np.ndarray, flow: np.ndarray) -> tuple[float, float]:
    """``(rho_err, inside)``: mean ``|I1(x + u) - I0(x)|`` in grey levels over the pixels whose
    target lies inside the frame, and the fraction of such pixels (see the module docstring)."""
    grey0, grey1 = _grey(frame0), _grey(frame1)
    height, width = grey0.shape
    flow = np.asarray(flow, dtype=np.float64)
    finite = np.all(np.isfinite(flow), axis=-1)
    flow_t = torch.from_numpy(np.where(finite[..., None], flow, 0)).permute(2, 0, 1)[None]
    warped = warp_bilinear(torch.from_numpy(grey1)[None, None], flow_t)[0, 0].numpy()
    ys, xs = np.mgrid[0:height, 0:width]
    tx, ty = xs + flow[..., 0], ys + flow[..., 1]
    inside = finite & (tx >= 0) & (tx <= width - 1) & (ty >= 0) & (ty <= height - 1)
    if not inside.any():
        return float("nan"), 0.0
    return float(np.abs(warped - grey0)[inside].mean()), float(inside.mean())


@dataclass
class BenchRow:
    """One (resolution, data set, method) cell of the benchmark."""

    size: str
    dataset: str
    method: str
    pairs: int = 0
    epe: float = float("nan")
    rho_error: float = float("nan")
    inside: float = float("nan")
    seconds: float = 0.0
    per_pair: dict[str, dict[str, float]] = field(default_factory=dict)

    @property
    def fps(self) -> float:
        return self.pairs / self.seconds if self.seconds > 0 else float("nan")

    def to_dict(self) -> dict[str, Any]:
        clean = lambda v: None if isinstance(v, float) and math.isnan(v) else v  # noqa: E731
        return {"size": self.size, "dataset": self.dataset, "method": self.method, "pairs": self.pairs,
                "epe": clean(self.epe), "rho_error": clean(self.rho_error), "inside": clean(self.inside),
                "fps": clean(self.fps), "seconds": self.seconds,
                "per_pair": {k: {m: clean(v) for m, v in d.items()} for k, d in self.per_pair.items()}}


def _size_label(size: tuple[int, int] | None) -> str:
    return "native" if size is None else f"{size[0]}x{size[1]}"


def run_flowbench(
    methods: Sequence[str | FlowMethod],
    datasets: dict[str, list[FlowPair]],
    sizes: Sequence[tuple[int, int] | None] = ((240, 320),),
    *,
    batch: int | None = None,
    weights: str | None = None,
    compile: bool = False,
    progress: bool = True,
    done: list[BenchRow] | None = None,
    min_seconds: float = 0.5,
) -> list[BenchRow]:
    """Run every method on every pair of every data set at every size.

    ``datasets`` maps a name to its pairs (any native size; each is resized to each entry of
    ``sizes``, ``None`` = keep).  ``weights`` and ``compile`` are passed to TVNet methods.  Returns one
    :class:`BenchRow` per (size, data set, method), plus ``"<method> (batch N)"`` rows for TVNet
    methods when ``batch`` is given.  ``done``: a list the rows are appended to as each (size, data
    set) finishes, so that a caller interrupted half-way still holds every finished row.
    ``min_seconds``: each (pair, method) is timed over repeated calls until they add up to this
    (at least 3 calls, at most 20) and its median call counts, so FPS from one or two pairs does not
    swing with a single slow or fast call.
    """
    tvnet_options = {"weights": weights, "compile": compile}
    built: list[FlowMethod] = [
        m if isinstance(m, FlowMethod)
        else create_flow_method(m, **(tvnet_options if m.lower().startswith("tvnet") else {}))
        for m in methods
    ]
    if not built:
        raise ValueError("methods: empty")
    rows: list[BenchRow] = done if done is not None else []
    total = sum(len(pairs) for pairs in datasets.values()) * len(sizes) * len(built)
    bar = tqdm(total=total, desc="flowbench", unit="run", file=sys.stderr, disable=not progress)
    for size in sizes:
        label = _size_label(size)
        warmed: set[str] = set()
        for dataset, pairs in datasets.items():
            resized = [resize_pair(p, size) for p in pairs]
            cells = {m.name: BenchRow(label, dataset, m.name) for m in built}
            for pair in resized:
                for method in built:  # round-robin: load changes affect all methods alike
                    if method.name not in warmed:
                        method(pair.frame0, pair.frame1)  # warm-up (allocations, lazy init)
                        warmed.add(method.name)
                    flow, elapsed = _timed(method, pair, min_seconds)
                    _score(cells[method.name], pair, flow, elapsed)
                    bar.update(1)
            for cell in cells.values():
                _finish(cell)
            finished = list(cells.values())
            if batch:
                finished += _batched_rows(built, resized, batch, label, dataset)
            rows.extend(finished)  # a (size, data set) counts as finished only whole
    bar.close()
    return rows


def _timed(method: FlowMethod, pair: FlowPair, min_seconds: float, min_calls: int = 3,
           max_calls: int = 20) -> tuple[np.ndarray, float]:
    """The flow of one pair and the median seconds of repeated calls (see :func:`run_flowbench`)."""
    times: list[float] = []
    while len(times) < min_calls or (sum(times) < min_seconds and len(times) < max_calls):
        start = time.perf_counter()
        flow = method(pair.frame0, pair.frame1)
        times.append(time.perf_counter() - start)
    return flow, statistics.median(times)


def _score(cell: BenchRow, pair: FlowPair, flow: np.ndarray, elapsed: float) -> None:
    rho, inside = photometric_error(pair.frame0, pair.frame1, flow)
    scores = {"rho_error": rho, "inside": inside, "seconds": elapsed}
    if pair.flow is not None:
        scores["epe"] = endpoint_error(flow, pair.flow, pair.valid)
    cell.per_pair[pair.name] = scores
    cell.pairs += 1
    cell.seconds += elapsed


def _finish(cell: BenchRow) -> None:
    def mean(key: str) -> float:
        values = [d[key] for d in cell.per_pair.values() if key in d and not math.isnan(d[key])]
        return float(np.mean(values)) if values else float("nan")

    cell.epe, cell.rho_error, cell.inside = mean("epe"), mean("rho_error"), mean("inside")


def _batched_rows(methods: list[FlowMethod], pairs: list[FlowPair], batch: int, label: str, dataset: str):
    rows = []
    for method in methods:
        if not isinstance(method, TVNetFlow) or not pairs:
            continue
        method.batch_size = batch
        frames0, frames1 = [p.frame0 for p in pairs], [p.frame1 for p in pairs]
        method.batch(frames0[:batch], frames1[:batch])  # warm-up at the batch size
        start = time.perf_counter()
        flows = method.batch(frames0, frames1)
        elapsed = time.perf_counter() - start
        cell = BenchRow(label, dataset, f"{method.name} (batch {batch})")
        for pair, flow in zip(pairs, flows):
            _score(cell, pair, flow, 0.0)
        cell.seconds = elapsed
        _finish(cell)
        rows.append(cell)
    return rows


def format_table(rows: Sequence[BenchRow]) -> str:
    """A plain-text table: one line per (size, data set, method)."""
    from tabulate import tabulate

    def fmt(value: float, digits: int) -> str:
        return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"

    body = [[r.size, r.dataset, r.method, r.pairs, fmt(r.epe, 3), fmt(r.rho_error, 2), fmt(r.inside, 3), fmt(r.fps, 2)]
            for r in rows]
    headers = ["size", "dataset", "method", "pairs", "EPE", "rho err", "inside", "FPS"]
    note = ("EPE: TVNet Eq. 14 over known GT; rho err: mean |I1(x+u)-I0(x)| in grey levels over pixels with "
            "x+u inside the frame (fraction: inside); FPS: pairs/s of the method call only.\n")
    return tabulate(body, headers=headers, tablefmt="simple", disable_numparse=True) + "\n" + note
