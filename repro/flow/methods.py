"""Every optical-flow method behind one interface.

    >>> method = create_flow_method("tvnet-50")          # or "tvl1-5-5-50", "dis-fast", ...
    >>> flow = method(frame0, frame1)                     # (H, W, 2) float32 pixels
    >>> flows = method.batch([f0, f1, ...], [g0, g1, ...])

Conventions (shared by all methods): frames are ``(H, W, 3)`` RGB or ``(H, W)`` grey arrays,
uint8 or float in [0, 255]; the result is the *forward* flow from ``frame0`` to ``frame1``,
``(H, W, 2)`` float32 in pixels, channel 0 = x (horizontal, right), channel 1 = y (vertical,
down), so that ``frame0(x) ~ frame1(x + flow(x))``.

Names (:func:`create_flow_method`):

==========================  ==================================================================
``tvnet-N``                 TVNet-1-1-N (Fan et al. 2018), e.g. ``tvnet-50``
``tvnet-Ns-Nw-Ni``          TVNet with Ns scales, Nw warps, Ni iterations, e.g. ``tvnet-3-1-10``
``tvl1``                    OpenCV ``DualTVL1OpticalFlow`` with OpenCV's defaults (5 scales at
                            0.8, 5 warps, 10 outer x 30 inner iterations with a 5x5 median
                            filter per outer iteration, epsilon 0.01 stopping)
``tvl1-Ns-Nw-Ni``           OpenCV TV-L1 set to exactly Ns-Nw-Ni (see :class:`OpenCVTVL1`)
``dis-fast``/``dis-medium``  OpenCV DIS presets (Kroeger et al. 2016)
``deepflow``                OpenCV contrib DeepFlow (Weinzaepfel et al. 2013)
``farneback``               OpenCV Farneback with MMAction2's flow-extraction settings
``skimage-tvl1``            ``skimage.registration.optical_flow_tvl1`` with its defaults
``zero``                    the zero flow (the baseline: its EPE is the mean flow magnitude)
``dispmap[-wta][-sS]``      Disentangling Dynamics' displacement map (cosine cost volume +
                            soft-argmax, or winner-take-all) on fixed patch features, computed
                            on the image pooled S x (see :class:`DisplacementMapFlow`); options
                            ``-dD`` window in pixels of the image (default 4), ``-tT`` temperature
==========================  ==================================================================
"""
from __future__ import annotations

import os
import re
from abc import ABC, abstractmethod
from typing import Any, Sequence

import cv2
import numpy as np
import torch

from repro.models.tvnet import TVNet, load_tvnet, parse_tvnet_name

__all__ = [
    "FlowMethod",
    "TVNetFlow",
    "OpenCVTVL1",
    "OpenCVDIS",
    "OpenCVDeepFlow",
    "OpenCVFarneback",
    "SkimageTVL1",
    "DisplacementMapFlow",
    "ZeroFlow",
    "create_flow_method",
    "flow_method_names",
    "to_grey_uint8",
]


def _check_pair(frame0: np.ndarray, frame1: np.ndarray) -> None:
    if not isinstance(frame0, np.ndarray) or not isinstance(frame1, np.ndarray):
        raise TypeError("frame0/frame1: expected numpy arrays (H, W[, 3])")
    if frame0.shape != frame1.shape:
        raise ValueError(f"frame0/frame1: shapes differ, {frame0.shape} vs {frame1.shape}")
    if frame0.ndim not in (2, 3) or (frame0.ndim == 3 and frame0.shape[2] not in (1, 3)):
        raise ValueError(f"frames: expected (H, W) grey or (H, W, 3) RGB, got {frame0.shape}")


def to_grey_uint8(frame: np.ndarray) -> np.ndarray:
    """``(H, W[, 3])`` RGB/grey, uint8 or float in [0, 255] -> ``(H, W)`` uint8 grey (luma)."""
    if frame.ndim == 3 and frame.shape[2] == 1:
        frame = frame[..., 0]
    if frame.dtype != np.uint8:
        frame = np.clip(np.rint(frame), 0, 255).astype(np.uint8)
    if frame.ndim == 3:
        frame = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
    return frame


class FlowMethod(ABC):
    """One flow method; call it on a pair, or :meth:`batch` on lists of pairs."""

    name: str

    def __call__(self, frame0: np.ndarray, frame1: np.ndarray) -> np.ndarray:
        _check_pair(frame0, frame1)
        flow = self.compute(frame0, frame1)
        return np.ascontiguousarray(flow, dtype=np.float32)

    @abstractmethod
    def compute(self, frame0: np.ndarray, frame1: np.ndarray) -> np.ndarray:
        """``(H, W, 2)`` forward flow; inputs already checked."""

    def batch(self, frames0: Sequence[np.ndarray], frames1: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Flows of several pairs (methods that can batch override this)."""
        if len(frames0) != len(frames1):
            raise ValueError(f"batch: {len(frames0)} first frames but {len(frames1)} second frames")
        return [self(a, b) for a, b in zip(frames0, frames1)]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


# ----------------------------------------------------------------------------------------------
# TVNet
# ----------------------------------------------------------------------------------------------


class TVNetFlow(FlowMethod):
    """:class:`repro.models.tvnet.TVNet` as a flow method (inference mode, optional batching).

    ``batch`` stacks pairs of equal size into one tensor and runs them ``batch_size`` at a time.
    ``compile=True`` fuses each iteration with ``torch.compile`` (see
    :meth:`TVNet.use_compiled_iterations`).
    """

    def __init__(self, model: TVNet, name: str | None = None, *, batch_size: int = 8, device: str = "cpu",
                 compile: bool = False) -> None:
        self.model = model.eval().to(device)
        if compile:
            self.model.use_compiled_iterations()
        self.name = name or model.name.lower()
        self.batch_size = int(batch_size)
        self.device = torch.device(device)

    def _to_tensor(self, frames: Sequence[np.ndarray]) -> torch.Tensor:
        stack = np.stack([f if f.ndim == 3 else f[..., None] for f in frames]).astype(np.float32)
        return torch.from_numpy(stack).permute(0, 3, 1, 2).to(self.device)

    def _run(self, frames0: Sequence[np.ndarray], frames1: Sequence[np.ndarray]) -> list[np.ndarray]:
        with torch.inference_mode():
            flow = self.model(self._to_tensor(frames0), self._to_tensor(frames1))
        return list(flow.permute(0, 2, 3, 1).float().cpu().numpy())

    def compute(self, frame0: np.ndarray, frame1: np.ndarray) -> np.ndarray:
        return self._run([frame0], [frame1])[0]

    def batch(self, frames0: Sequence[np.ndarray], frames1: Sequence[np.ndarray]) -> list[np.ndarray]:
        if len(frames0) != len(frames1):
            raise ValueError(f"batch: {len(frames0)} first frames but {len(frames1)} second frames")
        out: list[np.ndarray | None] = [None] * len(frames0)
        by_shape: dict[tuple, list[int]] = {}
        for i, (a, b) in enumerate(zip(frames0, frames1)):
            _check_pair(a, b)
            by_shape.setdefault(a.shape, []).append(i)
        for indices in by_shape.values():
            for start in range(0, len(indices), self.batch_size):
                chunk = indices[start : start + self.batch_size]
                for i, flow in zip(chunk, self._run([frames0[i] for i in chunk], [frames1[i] for i in chunk])):
                    out[i] = np.ascontiguousarray(flow, dtype=np.float32)
        return out  # type: ignore[return-value]


# ----------------------------------------------------------------------------------------------
# OpenCV
# ----------------------------------------------------------------------------------------------


class OpenCVTVL1(FlowMethod):
    """OpenCV contrib ``cv2.optflow.DualTVL1OpticalFlow``.

    Without ``scales_warps_iters`` OpenCV's own defaults are used (``tvl1``; what MMAction2's
    flow extraction and most two-stream pipelines run).  With ``(Ns, Nw, Ni)`` the solver is set to
    do exactly what TVNet-Ns-Nw-Ni / the paper's TV-L1-Ns-Nw-Ni does:

    * ``nscales = Ns``, ``warps = Nw``, ``scaleStep = 0.5`` (TVNet's zoom factor; OpenCV's
      default is 0.8).  OpenCV drops levels narrower than 16 pixels, TVNet uses the
      diagonal rule -- both cap ``Ns`` only on tiny images;
    * OpenCV splits the iterations per warp into ``outerIterations`` x ``innerIterations`` and
      median-filters the flow at the start of every outer iteration; ``innerIterations = Ni``,
      ``outerIterations = 1`` and ``medianFiltering = 1`` (off) give Ni plain Algorithm-1
      iterations per warp;
    * ``epsilon = 0`` disables the early stop (sum of squared flow updates < eps^2 * area), so
      exactly Ni iterations run;
    * tau 0.25, lambda 0.15, theta 0.3, gamma 0 (OpenCV's defaults equal TVNet's).
    """

    def __init__(self, scales_warps_iters: tuple[int, int, int] | None = None, name: str | None = None) -> None:
        self.scales_warps_iters = scales_warps_iters
        if scales_warps_iters is None:
            self.name = name or "tvl1"
            self._solver = cv2.optflow.DualTVL1OpticalFlow_create()
        else:
            scales, warps, iters = scales_warps_iters
            self.name = name or f"tvl1-{scales}-{warps}-{iters}"
            self._solver = cv2.optflow.DualTVL1OpticalFlow_create(
                tau=0.25, lambda_=0.15, theta=0.3, nscales=scales, warps=warps, epsilon=0.0,
                innnerIterations=iters,  # (sic) OpenCV's Python keyword is spelt with three n's
                outerIterations=1, scaleStep=0.5, gamma=0.0, medianFiltering=1,
            )  # fmt: skip

    def compute(self, frame0: np.ndarray, frame1: np.ndarray) -> np.ndarray:
        return self._solver.calc(to_grey_uint8(frame0), to_grey_uint8(frame1), None)


class OpenCVDIS(FlowMethod):
    """OpenCV DIS optical flow (``preset`` ``"fast"`` / ``"medium"`` / ``"ultrafast"``)."""

    _PRESETS = {"ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST, "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
                "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM}

    def __init__(self, preset: str = "fast") -> None:
        if preset not in self._PRESETS:
            raise ValueError(f"DIS preset: expected one of {sorted(self._PRESETS)}, got {preset!r}")
        self.name = f"dis-{preset}"
        self._solver = cv2.DISOpticalFlow_create(self._PRESETS[preset])

    def compute(self, frame0: np.ndarray, frame1: np.ndarray) -> np.ndarray:
        return self._solver.calc(to_grey_uint8(frame0), to_grey_uint8(frame1), None)


class OpenCVDeepFlow(FlowMethod):
    """OpenCV contrib DeepFlow (``cv2.optflow.createOptFlow_DeepFlow``) with its defaults."""

    name = "deepflow"

    def __init__(self) -> None:
        self._solver = cv2.optflow.createOptFlow_DeepFlow()

    def compute(self, frame0: np.ndarray, frame1: np.ndarray) -> np.ndarray:
        return self._solver.calc(to_grey_uint8(frame0), to_grey_uint8(frame1), None)


class OpenCVFarneback(FlowMethod):
    """``cv2.calcOpticalFlowFarneback`` with MMAction2's ``flow_extraction.py`` settings
    (pyr_scale 0.5, 3 levels, window 15, 3 iterations, poly_n 5, poly_sigma 1.2)."""

    name = "farneback"

    def compute(self, frame0: np.ndarray, frame1: np.ndarray) -> np.ndarray:
        grey0, grey1 = to_grey_uint8(frame0), to_grey_uint8(frame1)
        return cv2.calcOpticalFlowFarneback(grey0, grey1, None, 0.5, 3, 15, 3, 5, 1.2, 0)


class SkimageTVL1(FlowMethod):
    """``skimage.registration.optical_flow_tvl1(reference=frame0, moving=frame1)`` with its
    defaults.  It returns ``(v_row, v_col)`` with ``frame0(r) ~ frame1(r + v)`` -- the forward
    flow in (y, x) order -- which is reordered to (x, y)."""

    name = "skimage-tvl1"

    def __init__(self, **kwargs: Any) -> None:
        self.kwargs = kwargs

    def compute(self, frame0: np.ndarray, frame1: np.ndarray) -> np.ndarray:
        from skimage.registration import optical_flow_tvl1

        grey0 = to_grey_uint8(frame0).astype(np.float32) / 255.0
        grey1 = to_grey_uint8(frame1).astype(np.float32) / 255.0
        v_row, v_col = optical_flow_tvl1(grey0, grey1, **self.kwargs)
        return np.stack([v_col, v_row], axis=-1)


class ZeroFlow(FlowMethod):
    """No motion at all: the bar an EPE is read against (its EPE is the mean ground-truth flow
    magnitude over the valid pixels)."""

    name = "zero"

    def compute(self, frame0: np.ndarray, frame1: np.ndarray) -> np.ndarray:
        return np.zeros((*frame0.shape[:2], 2), np.float32)


# ----------------------------------------------------------------------------------------------
# Disentangling Dynamics' displacement map
# ----------------------------------------------------------------------------------------------


class DisplacementMapFlow(FlowMethod):
    """The displacement map of *Disentangling Components of Dynamics* (§3.3, Eq. 1-2) as a flow
    method: the cosine cost volume of two frames' features over a (2Δ+1)² window, then its
    soft-argmax at temperature τ (or the winner-take-all displacement of Table 3's "Cost volume +
    WTA"), in pixels of the image.

    A diagnostic, not a paper number: the paper matches learned BN-Inception features, which
    only exist after training.  Here the features are fixed -- the zero-mean ``patch`` x ``patch``
    grey patch around each pixel, so the cosine is normalised cross-correlation (block matching) --
    which checks the op's conventions (displacement index, x/y order, sign, border mask, τ) on
    pairs with exact flow.  ``stride`` s computes the map on the image average-pooled s x (Table 3's
    112² map beside the 224² one) with a window of ``window // s`` map pixels, and resamples the
    displacements to the image grid (:func:`repro.models.dynamics.resize_flow`).
    """

    def __init__(self, matcher: str = "soft", stride: int = 1, window: int = 4, temperature: float = 0.01,
                 patch: int = 5, name: str | None = None) -> None:
        if matcher not in ("soft", "wta"):
            raise ValueError(f"matcher: expected 'soft' or 'wta', got {matcher!r}")
        if stride < 1 or window < stride or patch < 1 or patch % 2 == 0 or not temperature > 0:
            raise ValueError(f"dispmap: expected stride >= 1, window >= stride, an odd patch and temperature > 0; "
                             f"got stride {stride}, window {window}, patch {patch}, temperature {temperature}")
        self.matcher, self.stride, self.patch = matcher, int(stride), int(patch)
        self.max_disp, self.temperature = int(window) // int(stride), float(temperature)
        wta, pooled = ("-wta" if matcher == "wta" else ""), (f"-s{stride}" if stride > 1 else "")
        self.name = name or f"dispmap{wta}{pooled}-d{window}" + (f"-t{temperature:g}" if matcher == "soft" else "")

    @classmethod
    def of_head(cls, head: torch.nn.Module, stride: int) -> "DisplacementMapFlow":
        """The matcher of a Dynamics model's :class:`repro.models.dynamics.DisplacementHead` on a map
        ``stride`` x coarser than the image (its conv1 stride): same matcher, window and τ (a learned
        τ at its current value)."""
        return cls(head.matcher, stride, head.max_disp * stride, float(head.temperature))

    def features(self, grey: torch.Tensor) -> torch.Tensor:
        """``(1, 1, H, W)`` grey -> ``(1, patch², H/s, W/s)`` zero-mean patches of the pooled image."""
        pooled = torch.nn.functional.avg_pool2d(grey, self.stride) if self.stride > 1 else grey
        r = self.patch // 2
        padded = torch.nn.functional.pad(pooled, (r, r, r, r), mode="replicate")
        patches = torch.nn.functional.unfold(padded, self.patch).view(1, self.patch ** 2, *pooled.shape[-2:])
        return patches - patches.mean(dim=1, keepdim=True)

    def compute(self, frame0: np.ndarray, frame1: np.ndarray) -> np.ndarray:
        from repro.models.dynamics import resize_flow
        from repro.ops.cost_volume import cost_volume_displacement, cosine_cost_volume, wta_displacement

        f0, f1 = (self.features(torch.from_numpy(to_grey_uint8(f)).float().div(255.0)[None, None])
                  for f in (frame0, frame1))
        with torch.no_grad():
            if self.matcher == "wta":
                disp = wta_displacement(cosine_cost_volume(f0, f1, self.max_disp), self.max_disp)
            else:
                disp = cost_volume_displacement(f0, f1, self.max_disp, self.temperature)  # (1, 2, h, w) x, y
            flow = resize_flow(disp, tuple(frame0.shape[:2]))
        return flow[0].permute(1, 2, 0).numpy()


# ----------------------------------------------------------------------------------------------
# Names
# ----------------------------------------------------------------------------------------------

_TVL1 = re.compile(r"^tvl1-(\d+)-(\d+)-(\d+)$")
_DISPMAP = re.compile(r"^dispmap(-wta)?(?:-s(\d+))?(?:-d(\d+))?(?:-t(\d*\.?\d+))?$")
_FIXED = {
    "tvl1": lambda: OpenCVTVL1(),
    "dis-fast": lambda: OpenCVDIS("fast"),
    "dis-medium": lambda: OpenCVDIS("medium"),
    "deepflow": OpenCVDeepFlow,
    "farneback": OpenCVFarneback,
    "skimage-tvl1": SkimageTVL1,
    "zero": ZeroFlow,
}


def flow_method_names() -> list[str]:
    """The method names (patterns shown with their placeholders)."""
    return ["tvnet-N", "tvnet-Ns-Nw-Ni", "tvl1", "tvl1-Ns-Nw-Ni", *[n for n in _FIXED if n != "tvl1"],
            "dispmap[-wta][-sS][-dD][-tT]"]


def create_flow_method(name: str, *, weights: str | None = None, batch_size: int = 8, device: str = "cpu",
                       compile: bool = False, **tvnet_kwargs: Any) -> FlowMethod:
    """Build a method by name (see the module docstring).

    ``weights`` (TVNet only): a file written by :func:`repro.models.tvnet.save_tvnet` (its saved
    configuration is used; the name's Ns-Nw-Ni must match) or a plain ``state_dict`` for the
    named structure.  ``compile`` (TVNet only) fuses the iterations with ``torch.compile``.
    ``tvnet_kwargs`` go to :class:`TVNet` (e.g. ``tau``, ``warp_mode``).
    """
    key = name.strip().lower()
    if key.startswith("tvnet"):
        scales, warps, iters = parse_tvnet_name(key)
        canonical = f"tvnet-{scales}-{warps}-{iters}" if (scales, warps) != (1, 1) else f"tvnet-{iters}"
        if weights is None:
            model = TVNet(scales, warps, iters, **tvnet_kwargs)
        else:
            model = _tvnet_with_weights(weights, (scales, warps, iters), tvnet_kwargs)
        return TVNetFlow(model, canonical, batch_size=batch_size, device=device, compile=compile)
    if weights is not None:
        raise ValueError(f"--weights: only TVNet methods take trained weights, not {name!r}")
    if tvnet_kwargs:
        raise ValueError(f"{name!r}: unexpected options {sorted(tvnet_kwargs)} (TVNet-only)")
    match = _TVL1.match(key)
    if match:
        scales, warps, iters = (int(g) for g in match.groups())
        if min(scales, warps, iters) < 1:
            raise ValueError(f"method {name!r}: scales, warps and iterations must be >= 1")
        return OpenCVTVL1((scales, warps, iters))
    if key in _FIXED:
        return _FIXED[key]()
    match = _DISPMAP.match(key)
    if match:
        wta, stride, window, temperature = match.groups()
        return DisplacementMapFlow("wta" if wta else "soft", int(stride or 1), int(window or 4),
                                   float(temperature or 0.01), name=key)
    raise ValueError(f"unknown flow method {name!r}; expected one of: {', '.join(flow_method_names())}")


def _tvnet_with_weights(path: str, structure: tuple[int, int, int], kwargs: dict[str, Any]) -> TVNet:
    if not os.path.isfile(path):
        raise FileNotFoundError(f"--weights: file not found: {path}")
    data = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(data, dict) and "config" in data:
        model = load_tvnet(path, **kwargs)
        saved = (model.num_scales, model.num_warps, model.num_iters)
        if saved != structure:
            raise ValueError(f"--weights {path}: trained TVNet is {saved[0]}-{saved[1]}-{saved[2]}, "
                             f"method asks for {structure[0]}-{structure[1]}-{structure[2]}")
        return model
    state = data.get("state_dict", data) if isinstance(data, dict) else data
    u0 = state.get("u0") if isinstance(state, dict) else None
    if u0 is not None and "image_size" not in kwargs:
        # A plain state_dict with a learnt u0: lay it out at its own size (resampled for other inputs).
        kwargs = {**kwargs, "trainable": "u0", "image_size": _image_size_for_u0(u0.shape[-2:], structure[0])}
    model = TVNet(*structure, **kwargs)
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise ValueError(f"--weights {path}: does not fit TVNet-{'-'.join(map(str, structure))}: {err}") from err
    return model


def _image_size_for_u0(u0_size: Sequence[int], num_scales: int) -> tuple[int, int]:
    # u0 lives at the coarsest scale; with one scale that is the image itself.
    if num_scales == 1:
        return int(u0_size[0]), int(u0_size[1])
    raise ValueError("a multi-scale TVNet state_dict with u0 needs the file written by save_tvnet "
                     "(it stores image_size)")
