"""Disentangling Components of Dynamics (Zhao, Xiong & Lin, "Recognize Actions by Disentangling
Components of Dynamics", CVPR 2018): three branches on shared BN-Inception ``conv1`` features,
fused by averaging their class scores (§3.1, Fig. 2).

* **static appearance** (§3.2, Fig. 3; Tables 1-2): BN-Inception from ``pool1`` on, per frame,
  with parameter-free temporal max pooling after ``pool2``, ``inception_3c`` and ``inception_4e``
  ("gradual", §4.2) or once on the final 1024-d features ("late");
* **apparent motion** (§3.3, Fig. 4, Eq. 1-2; Table 3): the cosine cost volume of the ``conv1``
  features of consecutive frames, the soft-argmax (or winner-take-all) displacement map, then
  BN-Inception layers;
* **appearance change** (§3.4; Table 4): warped feature differences, then BN-Inception layers;
* TSN segmental consensus (§4.2 "Combination with learning long-term dynamics", Table 5): the
  branch scores of ``num_segments`` snippets averaged.

The paper defers "technical details of the architecture" to a supplement that is not public and
no code was released, so several choices are **[unstated]**; each is made at its line with a
comment citing ``shared/design/dynamics_lgd_brief.md`` ("brief", §A.x) and the paper:

* motion branch input (brief §A.4; default ``motion_layout="pairs"``): each pair's 2-channel
  displacement map takes the place of the 64 conv1 channels and continues BN-Inception from
  ``pool1`` (``conv2_3x3_reduce`` takes 2 channels, TSN cross-modality init, §4.1), pooled over the
  ``T-1`` pairs like the static branch -- the way §3.4 says the warped differences go on ("fed
  into subsequent layers in the similar manner of the displacement maps").  Chosen over the
  brief's first reading, ``motion_layout="stack"`` (the ``T-1`` maps stacked on channels,
  ``2·(T-1)`` pair-major ``x_0, y_0, x_1, y_1, ...`` like TSN's flow stack, into a full
  BN-Inception "temporal stream" with its own stride-2 ``conv1``), because the paper's speed
  tables only fit per-pair nets (docs/dynamics.md has the figures, 224² input, T = 8): Table 9's
  branch-own times put motion at 2.80x static and app-change at 1.27x motion; the own MACs are
  motion 25.4 G vs static 27.2 G vs app-change 25.9 G per snippet with "pairs" (0.93, 1.02) but
  motion 2.5 G with "stack" (0.09, 10.5: the stacked net would be the *cheapest* branch by an
  order of magnitude, not the second slowest); and Table 3's 112² map runs 3.6x faster than the
  224² one (190 vs 53 FPS), which per-pair nets give (the whole motion path scales with the map,
  ~4x) and a stacked net at a fixed input size does not.  Neither reading gives the displacement
  map's 0.64 share of the time in MACs (stack 0.066, pairs 0.048 of the headline MACs): that
  share is the cost volume's memory traffic on the GPU, measured (not counted) in Table 9.
* appearance-change branch (brief §A.5): per frame pair, BN-Inception from ``pool1`` on (the
  64-channel difference fits ``conv2_3x3_reduce``) with the static branch's temporal pooling over
  the ``T-1`` pairs ("fed into subsequent layers in the similar manner", §3.4; the pairs are not
  stacked on channels: 64·(T-1) channels at the ``conv1`` resolution would cost a 7x7 conv of
  tens of GMACs).
* warping direction (brief §A.5 option (b), exact for a backward warp): see
  :func:`warped_difference`.
* window ``max_disp`` and temperature ``τ`` (brief §A.4, §D.1): defaults 4 and 0.01 (MotionSqueeze's
  value, the low end of the brief's range).  With *untrained* conv1 features of smooth images the
  cosines are close to 1 across the window and τ = 0.01 recovers only part of a shift (about half
  in ``tests/test_dynamics.py``'s translating video; τ = 0.001 recovers it): sweep τ or use
  ``learn_temperature``.
* fusion (brief §D.10, §A.6): the average of the branch **logits** (TSN's score fusion and
  consensus average pre-softmax class scores); ``fusion="softmax"`` averages probabilities.

Tensor layout: the video is ``(N, 3, K·L, H, W)``, ``K = num_segments`` snippets of
``L = num_frames`` consecutive frames, segment by segment (``repro.data.sampling``'s TSN order).
Snippets fold into the batch (``B = N·K``), frames too (``B·L``).  ``forward`` returns logits
``(N, num_classes)``; models with an external-flow input (Tables 4 and 6 TV-L1 rows) also take
``flow_fwd (N, 2, K·L, H, W)`` in image pixels (``flow_fwd[:, :, t]``: frame t -> t+1).
"""
from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from repro.layers.temporal_pool import temporal_global_max, temporal_max_pool
from repro.models.bninception import BNInception, tsn_key
from repro.models._builder import load_checkpoint_state
from repro.models.contract import FLOW_INPUTS, VideoModel, example_input
from repro.ops.cost_volume import (consecutive_pairs, cost_volume_displacement, cost_volume_displacement_frames,
                                   cosine_cost_volume, wta_displacement)
from repro.ops.warp import bilinear_sample_reference, warp_backward
from repro.registry import register_model

__all__ = [
    "BRANCHES",
    "CHANGE_INPUTS",
    "POOL_AFTER",
    "DisplacementHead",
    "TemporalPoolNet",
    "DynamicsNet",
    "consecutive_pairs",
    "stack_pairs",
    "resize_flow",
    "warped_difference",
    "warped_difference_reference",
    "segment_consensus",
    "fuse_scores",
    "load_dynamics_pretrained",
]

BRANCHES = ("static", "motion", "change")
MOTION_LAYOUTS = ("stack", "pairs")
MATCHERS = ("soft", "wta")
TEMPORAL_POOLS = ("gradual", "late")
MOTION_INPUTS = ("disp", "flow")
# Table 4: warped / un-warped differences of conv1 features or of RGB frames.
CHANGE_INPUTS = ("warped_feature_diff", "feature_diff", "rgb_diff", "warped_rgb_diff")
WARP_FLOWS = ("disp", "flow")
FUSIONS = ("logits", "softmax")
# §4.2: "temporal pooling after pool2, inception3c, and inception4e".
POOL_AFTER = ("pool2", "inception_3c", "inception_4e")


# ----------------------------------------------------------------------------------------------
# pure ops
# ----------------------------------------------------------------------------------------------
def stack_pairs(v: Tensor, num_pairs: int) -> Tensor:
    """``(B·P, c, H, W)`` per-pair maps -> ``(B, P·c, H, W)``, pair-major channels (TSN's flow stack)."""
    return v.reshape(int(v.shape[0]) // num_pairs, num_pairs * int(v.shape[1]), *v.shape[2:])


def resize_flow(flow: Tensor, size: tuple[int, int]) -> Tensor:
    """Flow ``(B, 2, h, w)`` in pixels of its grid -> ``(B, 2, H, W)`` in pixels of the new grid:
    bilinear resampling, x scaled by ``W/w`` and y by ``H/h``.  (``align_corners=False`` puts pixel
    centres at half-pixel offsets; conv1's stride-s output pixel i sits at image pixel s·i, a
    quarter-pixel misregistration at s = 2, left as is.)"""
    h, w = int(flow.shape[-2]), int(flow.shape[-1])
    if (h, w) == tuple(size):
        return flow
    out = F.interpolate(flow, size=size, mode="bilinear", align_corners=False)
    return out * out.new_tensor([size[1] / w, size[0] / h]).view(1, 2, 1, 1)


def warped_difference(f0: Tensor, f1: Tensor, disp: Tensor) -> Tensor:
    """Warped difference (§3.4) on frame t's grid: ``W(f1, V) - f0`` with ``W(f1, V)(p) = f1(p + V(p))``.

    ``f0 = F_t``, ``f1 = F_{t+1}`` ``(B, C, H, W)``; ``disp = V_t`` ``(B, 2, H, W)`` (x, y), the
    displacement t -> t+1 on frame t's grid (:mod:`repro.ops.cost_volume`'s convention).

    **Direction.**  The paper writes ``F'_{t+1} = W(F_t, V_t)`` and ``D = F_{t+1} - F'_{t+1}`` on
    frame t+1's grid, which needs a forward splat or V sampled at the target.  Here (brief §A.5,
    option (b)) frame t+1's features are warped *back* to frame t with the backward warp
    ``f1(p + V(p))`` (bilinear, zeros where the source point is outside, as §3.4), which is exact
    for a displacement defined on frame t's grid: if ``f1(p + s) = f0(p)`` (content moved by s)
    and ``V = s``, the difference is 0 wherever ``p + s`` is inside.  The sign keeps the paper's
    "next minus predicted next": with ``V = 0`` it is ``F_{t+1} - F_t`` (TSN's RGB-Diff order).
    """
    return warp_backward(f1, disp) - f0


def warped_difference_reference(f0: Tensor, f1: Tensor, disp: Tensor) -> Tensor:
    """:func:`warped_difference` with the explicit bilinear formula, one sample at a time."""
    out = []
    for i in range(f0.shape[0]):
        h, w = f0.shape[-2:]
        ys, xs = torch.meshgrid(torch.arange(h, dtype=disp.dtype), torch.arange(w, dtype=disp.dtype), indexing="ij")
        out.append(bilinear_sample_reference(f1[i], xs + disp[i, 0], ys + disp[i, 1]) - f0[i])
    return torch.stack(out)


def segment_consensus(scores: Tensor, num_segments: int) -> Tensor:
    """TSN average consensus: ``(N·K, classes)`` snippet scores -> ``(N, classes)``."""
    if num_segments == 1:
        return scores
    return scores.reshape(int(scores.shape[0]) // num_segments, num_segments, int(scores.shape[1])).mean(dim=1)


def fuse_scores(scores: Sequence[Tensor], fusion: str = "logits") -> Tensor:
    """Average of the branch predictions (§3.1).  ``"logits"``: mean of the logits (TSN fuses
    pre-softmax scores, brief §A.6).  ``"softmax"``: ``log`` of the mean probability, returned as
    logits (their softmax is the averaged probability)."""
    if len(scores) == 1:
        return scores[0]
    stacked = torch.stack(list(scores))  # (branches, N, classes)
    if fusion == "logits":
        return stacked.mean(dim=0)
    return torch.logsumexp(torch.log_softmax(stacked, dim=-1), dim=0) - math.log(len(scores))


# ----------------------------------------------------------------------------------------------
# modules
# ----------------------------------------------------------------------------------------------
class LowLevelStem(nn.Module):
    """BN-Inception's ``conv1_7x7_s2`` + BN + ReLU: the shared 64-channel low-level features
    (§3.1; §4.2 "the low-level feature map after the conv1 layer"), ``(B, 3, H, W)`` ->
    ``(B, 64·width, H/s, W/s)``."""

    def __init__(self, conv: nn.Conv2d, bn: nn.BatchNorm2d) -> None:
        super().__init__()
        self.conv1_7x7_s2, self.conv1_7x7_s2_bn = conv, bn

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.conv1_7x7_s2_bn(self.conv1_7x7_s2(x)))


class DisplacementHead(nn.Module):
    """Cost volume (§3.3) + soft assignment (Eq. 1-2) or WTA: ``(f0, f1)`` -> ``(B, 2, H, W)`` (x, y)
    in feature-map pixels.  ``learn_temperature`` makes ``log τ`` a parameter; ``impl="triton"`` runs
    the fused cost volume + soft-argmax kernel (GPU, forward only: inference and latency)."""

    def __init__(self, max_disp: int = 4, temperature: float = 0.01, matcher: str = "soft",
                 learn_temperature: bool = False, impl: str = "torch") -> None:
        super().__init__()
        if matcher not in MATCHERS:
            raise ValueError(f"matcher: expected one of {MATCHERS}, got {matcher!r}")
        if impl not in ("torch", "triton"):
            raise ValueError(f"cost_impl: expected 'torch' or 'triton', got {impl!r}")
        self.impl = impl
        if not temperature > 0:
            raise ValueError(f"temperature: expected > 0, got {temperature!r}")
        self.max_disp, self.matcher = int(max_disp), matcher
        # [unstated] τ (brief §A.4, §D.1): cosines lie in [-1, 1], so τ = 1 would give a near-uniform
        # softmax and a ~0 displacement everywhere; default 0.01 (MotionSqueeze; brief's range 0.01-0.05).
        self.fixed_temperature: float | None = None if learn_temperature else float(temperature)
        if learn_temperature:
            self.log_temperature = nn.Parameter(torch.tensor(math.log(temperature)))

    @property
    def temperature(self) -> float | Tensor:
        return self.fixed_temperature if self.fixed_temperature is not None else self.log_temperature.exp()

    def forward(self, f0: Tensor, f1: Tensor | None = None, num_frames: int | None = None) -> Tensor:
        """The map of the pair ``(f0, f1)`` ``(B, C, h, w)`` each, or with ``f1=None`` of each pair of
        consecutive frames of ``f0`` ``(B·L, C, h, w)``, ``L = num_frames`` (:func:`consecutive_pairs`'
        order; each frame normalised once)."""
        if f1 is None and self.matcher == "soft" and self.impl == "torch":
            return cost_volume_displacement_frames(f0, num_frames, self.max_disp, self.temperature)
        if f1 is None:
            f0, f1 = consecutive_pairs(f0, num_frames)
        if self.matcher == "wta":
            # Table 3 "Cost volume + WTA": argmax displacement, detached (no gradient reaches conv1
            # through this branch, brief §D.6).
            return wta_displacement(cosine_cost_volume(f0, f1, self.max_disp), self.max_disp)
        return cost_volume_displacement(f0, f1, self.max_disp, self.temperature, impl=self.impl)

    def extra_repr(self) -> str:
        temperature = self.fixed_temperature or "learned"
        return f"max_disp={self.max_disp}, matcher={self.matcher}, temperature={temperature}, impl={self.impl}"


def _bninception(num_classes: int, in_chans: int, width: float, conv1_stride: int, drop_rate: float,
                 partial_bn: bool, with_conv1: bool) -> tuple[BNInception, LowLevelStem | None]:
    """A BN-Inception; without ``conv1`` its ``conv1_7x7_s2`` (+BN) is moved into a returned stem."""
    net = BNInception(num_classes=num_classes, in_chans=in_chans, width=width, conv1_stride=conv1_stride,
                      drop_rate=drop_rate, partial_bn=partial_bn)
    if with_conv1:
        return net, None
    stem = LowLevelStem(net.conv1_7x7_s2, net.conv1_7x7_s2_bn)
    del net.conv1_7x7_s2, net.conv1_7x7_s2_bn  # the branch starts from the shared conv1 features
    return net, stem


class TemporalPoolNet(nn.Module):
    """Per-frame BN-Inception with temporal max pooling (§3.2, Fig. 3): ``(B·T, C, H, W)`` -> logits ``(B, classes)``.

    ``start="conv1"``: the input is conv1 features (the net has no conv1); ``start=None``: images
    (own conv1).  ``temporal_pool="gradual"``: max pools of 2 frames after :data:`POOL_AFTER`
    (kernel clamped to the frames present); ``"late"``: none inside.  Both end with a global
    temporal max of the per-frame 1024-d vectors (with gradual pooling that is a no-op at T <= 8
    and the fourth pool, 2 -> 1, at T = 16, brief §A.3).
    """

    def __init__(self, net: BNInception, start: str | None, temporal_pool: str = "gradual",
                 pool_kernel: int = 2) -> None:
        super().__init__()
        if temporal_pool not in TEMPORAL_POOLS:
            raise ValueError(f"temporal_pool: expected one of {TEMPORAL_POOLS}, got {temporal_pool!r}")
        self.net, self.start = net, start
        self.temporal_pool, self.pool_kernel = temporal_pool, int(pool_kernel)

    def forward(self, x: Tensor, num_frames: int) -> Tensor:
        t, stage = num_frames, self.start
        if self.temporal_pool == "gradual":
            for end in POOL_AFTER:
                x = self.net.forward_stages(x, stage, end)
                # [unstated] kernel = stride = 2, max (brief §A.3): "selecting the highest responses
                # across neighboring frames" (§3.2); 8 frames -> 4 -> 2 -> 1.
                x, t = temporal_max_pool(x, t, self.pool_kernel)
                stage = end
        x = self.net.forward_stages(x, stage, None)  # (B·T', 1024, h, w) at inception_5b
        # Global average pool per frame, then the global temporal max: "late" pooling is "one global
        # temporal pooling after the network produces its final features" (§4.2) -> on the 1024-d vectors.
        v = temporal_global_max(F.adaptive_avg_pool2d(x, 1).flatten(1), t)  # (B, 1024)
        return self.net.fc(self.net.dropout(v))


class DynamicsNet(VideoModel):
    """The Dynamics network: any non-empty subset of :data:`BRANCHES` on shared conv1 features.

    ``(N, 3, K·L, H, W)`` (+ ``flow_fwd`` when an external flow is used) -> logits ``(N, classes)``.
    See the module docstring for the readings implemented; arguments:

    * ``num_frames`` L (snippet length, §4.2: 8), ``num_segments`` K (TSN consensus);
    * ``width``, ``conv1_stride`` (the shared conv1: stride 2 -> H/2 map "112×112", 1 -> "224×224",
      Table 3), ``drop_rate`` (dropout after global_pool, §4.1), ``partial_bn`` (TSN: every BN but
      the first of each network frozen in training);
    * static: ``temporal_pool`` ``"gradual"`` | ``"late"``;
    * motion: ``matcher`` ``"soft"`` | ``"wta"``, ``max_disp`` Δ, ``temperature`` τ,
      ``learn_temperature``, ``cost_impl`` (``"torch"`` | ``"triton"``), ``motion_input``
      ``"disp"`` (displacement maps) | ``"flow"`` (an external flow stack at image resolution: the
      TV-L1 stream of Table 6), ``motion_conv1_stride`` (``"stack"`` only: the stacked net's own
      conv1; 2 as TSN's flow stream; a 112² map at full scale needs 1, 112 not being a multiple of 32),
      ``motion_layout`` ``"stack"`` | ``"pairs"`` (the two readings of §3.3's "subsequent layers");
    * change: ``change_input`` one of :data:`CHANGE_INPUTS` (Table 4), ``warp_flow`` ``"disp"`` |
      ``"flow"`` (what warps the ``warped_*`` inputs: the displacement map or ``flow_fwd``);
    * ``fusion`` ``"logits"`` | ``"softmax"``.
    """

    def __init__(
        self,
        num_classes: int = 101,
        branches: Sequence[str] = BRANCHES,
        num_frames: int = 8,
        num_segments: int = 1,
        in_chans: int = 3,
        width: float = 1.0,
        conv1_stride: int = 2,
        drop_rate: float = 0.0,
        partial_bn: bool = False,
        temporal_pool: str = "gradual",
        matcher: str = "soft",
        max_disp: int = 4,
        temperature: float = 0.01,
        learn_temperature: bool = False,
        cost_impl: str = "torch",
        motion_input: str = "disp",
        motion_conv1_stride: int = 2,
        motion_layout: str = "pairs",
        change_input: str = "warped_feature_diff",
        warp_flow: str = "disp",
        fusion: str = "logits",
    ) -> None:
        super().__init__()
        # A spec / CLI argument may give the branches as one string: "static,motion".
        branches = tuple(b.strip() for b in branches.split(",")) if isinstance(branches, str) else tuple(branches)
        self._check_args(branches, num_frames, num_segments, motion_input, change_input, warp_flow, fusion)
        if motion_layout not in MOTION_LAYOUTS:
            raise ValueError(f"motion_layout: expected one of {MOTION_LAYOUTS}, got {motion_layout!r}")
        self.motion_layout = motion_layout
        self.branches, self.num_classes = branches, num_classes
        self.num_frames, self.num_segments, self.in_chans = int(num_frames), int(num_segments), in_chans
        self.conv1_stride, self.motion_input, self.fusion = conv1_stride, motion_input, fusion
        self.change_input, self.warp_flow = change_input, warp_flow
        common = dict(width=width, drop_rate=drop_rate, partial_bn=partial_bn)
        stems: list[LowLevelStem] = []

        if "static" in branches:
            net, stem = _bninception(num_classes, in_chans, conv1_stride=conv1_stride, with_conv1=False, **common)
            stems.append(stem)
            self.static = TemporalPoolNet(net, "conv1", temporal_pool)
        if "motion" in branches and motion_layout == "stack":
            # The brief's first reading (§A.4), kept as an option: the T-1 maps stacked on channels
            # into a full BN-Inception (a TSN temporal stream; its conv1 takes 2(T-1) channels,
            # cross-modality init from RGB, §4.1).
            self.motion = BNInception(num_classes=num_classes, in_chans=2 * (self.num_frames - 1),
                                      conv1_stride=motion_conv1_stride, **common)
        elif "motion" in branches:
            # [unstated] §3.3 "subsequent convolution layers", the default reading (module docstring:
            # it fits Table 9's branch-own times and Table 3's 112 vs 224 speed, "stack" does not):
            # per pair, the 2-channel map in place of conv1's output; conv2_3x3_reduce re-made for 2
            # input channels (He init as BNInception's).
            net, _ = _bninception(num_classes, in_chans, conv1_stride=conv1_stride, with_conv1=False, **common)
            reduce = net.conv2_3x3_reduce
            net.conv2_3x3_reduce = nn.Conv2d(2, reduce.out_channels, 1, bias=True)
            nn.init.kaiming_normal_(net.conv2_3x3_reduce.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(net.conv2_3x3_reduce.bias)
            net.partial_bn_first = "conv2_3x3_reduce_bn"  # TSN partial BN: the BN after the input layer adapts
            self.motion = TemporalPoolNet(net, "conv1", temporal_pool)
        if "change" in branches:
            rgb = change_input in ("rgb_diff", "warped_rgb_diff")
            # [inferred] brief §A.5: feature differences continue BN-Inception after conv1 (64 channels
            # fit conv2_3x3_reduce); RGB differences (Table 4 "RGB" rows) get their own conv1.  Per pair,
            # pooled over the T-1 pairs like the static branch ("in the similar manner", §3.4).
            net, stem = _bninception(num_classes, in_chans, conv1_stride=conv1_stride, with_conv1=rgb, **common)
            stems.append(stem)
            self.change = TemporalPoolNet(net, None if rgb else "conv1", temporal_pool)
        stems = [s for s in stems if s is not None]
        if self.uses("features"):
            if not stems:  # motion from displacement maps / warping by them, without static or change
                stems.append(_bninception(num_classes, in_chans, conv1_stride=conv1_stride, with_conv1=False,
                                          **common)[1])
            self.conv1 = stems[0]  # §3.1: one conv1 shared by all branches
        if self.uses("displacement"):
            self.displacement = DisplacementHead(max_disp, temperature, matcher, learn_temperature, cost_impl)

    # ------------------------------------------------------------------------------ config
    @staticmethod
    def _check_args(branches, num_frames, num_segments, motion_input, change_input, warp_flow, fusion) -> None:
        if not branches or any(b not in BRANCHES for b in branches) or len(set(branches)) != len(branches):
            raise ValueError(f"branches: expected a non-empty subset of {BRANCHES}, got {branches!r}")
        for name, value, allowed in (("motion_input", motion_input, MOTION_INPUTS),
                                     ("change_input", change_input, CHANGE_INPUTS),
                                     ("warp_flow", warp_flow, WARP_FLOWS), ("fusion", fusion, FUSIONS)):
            if value not in allowed:
                raise ValueError(f"{name}: expected one of {allowed}, got {value!r}")
        if num_segments < 1 or num_frames < 1:
            raise ValueError(f"num_frames and num_segments: expected >= 1, got {num_frames} and {num_segments}")
        if num_frames < 2 and ("motion" in branches or "change" in branches):
            raise ValueError(f"num_frames: the motion and appearance-change branches need >= 2 frames per "
                             f"snippet (frame pairs), got {num_frames}")

    def uses(self, what: str, branches: Sequence[str] | None = None) -> bool:
        """Whether the ``branches`` (default: all of the model's) need ``"features"`` (shared conv1),
        ``"displacement"`` (the cost-volume maps) or ``"flow"`` (``flow_fwd``)."""
        branches = self.branches if branches is None else branches
        motion, change = "motion" in branches, "change" in branches
        warped = change and self.change_input.startswith("warped")
        disp = (motion and self.motion_input == "disp") or (warped and self.warp_flow == "disp")
        if what == "displacement":
            return disp
        if what == "flow":
            return (motion and self.motion_input == "flow") or (warped and self.warp_flow == "flow")
        if what == "features":
            return disp or "static" in branches or (change and self.change_input.endswith("feature_diff"))
        raise ValueError(f"uses: unknown {what!r}")

    @property
    def inputs(self) -> tuple[str, ...]:  # type: ignore[override]
        """The contract's declared inputs: the video, plus the flows when a branch uses an external
        flow (Tables 4 and 6 TV-L1 rows; only ``flow_fwd`` is read)."""
        return ("video", *FLOW_INPUTS) if self.uses("flow") else ("video",)

    def example_inputs(self, input_shape: tuple[int, ...]) -> tuple[Tensor, ...]:
        """A video of ``input_shape`` (+ the flows when the model takes them), for ``repro.profile``."""
        return tuple(example_input(name, tuple(input_shape)) for name in self.inputs)

    # ----------------------------------------------------------------------------- pieces
    def _frames(self, video: Tensor) -> Tensor:
        k, length = self.num_segments, self.num_frames
        if video.dim() != 5 or video.shape[1] != self.in_chans or video.shape[2] != k * length:
            raise ValueError(f"DynamicsNet: expected video (N, {self.in_chans}, T={k}x{length}, H, W) "
                             f"(num_segments x num_frames), got {tuple(int(s) for s in video.shape)}")
        return video.transpose(1, 2).flatten(0, 1)  # (N·K·L, 3, H, W), snippet-major

    def _pair_flows(self, flow_fwd: Tensor | None, video: Tensor) -> Tensor:
        """``flow_fwd (N, 2, K·L, H, W)`` -> ``(N·K·(L-1), 2, H, W)``: the flows inside each snippet."""
        n, _, t, h, w = video.shape
        if flow_fwd is None or tuple(flow_fwd.shape) != (n, 2, t, h, w):
            got = None if flow_fwd is None else tuple(flow_fwd.shape)
            raise ValueError(f"flow_fwd: this model needs the forward flow (N, 2, T, H, W) = {(n, 2, t, h, w)} "
                             f"(set the run's 'flow:'), got {got}")
        f = flow_fwd.reshape(n, 2, self.num_segments, self.num_frames, h, w)[:, :, :, :-1]  # last: past the snippet
        return f.permute(0, 2, 3, 1, 4, 5).reshape(-1, 2, h, w)

    def _change_input(self, frames: Tensor, feats: Tensor | None, disp: Tensor | None,
                      flow: Tensor | None) -> Tensor:
        """The appearance-change branch's per-pair input ``(B·(L-1), c, h, w)`` (Table 4)."""
        if self.change_input in ("rgb_diff", "warped_rgb_diff"):
            f0, f1 = consecutive_pairs(frames, self.num_frames)
        else:
            f0, f1 = consecutive_pairs(feats, self.num_frames)
        if not self.change_input.startswith("warped"):
            return f1 - f0  # no warping: F_{t+1} - F_t (TSN RGB-Diff for RGB)
        v = disp if self.warp_flow == "disp" else flow
        return warped_difference(f0, f1, resize_flow(v, tuple(f0.shape[-2:])))  # flow on f0's grid

    def compute(self, video: Tensor, flow_fwd: Tensor | None = None, what: str = "logits") -> Tensor:
        """``what``: ``"logits"`` (fused), a branch name (its logits after consensus), ``"conv1"``
        (the shared features ``(N·K·L, 64w, h, w)``) or ``"displacement"`` (``(N·K·(L-1), 2, h, w)``)."""
        return self._compute(video, flow_fwd, what)[what]

    def branch_logits(self, video: Tensor, flow_fwd: Tensor | None = None) -> dict[str, Tensor]:
        """``{branch: (N, classes)}``, each after the segment consensus."""
        out = self._compute(video, flow_fwd, "branches")
        return {b: out[b] for b in self.branches}

    def _compute(self, video: Tensor, flow_fwd: Tensor | None, what: str) -> dict[str, Tensor]:
        wanted = {"logits": self.branches, "branches": self.branches}.get(what, (what,) if what in BRANCHES else ())
        if what in ("conv1", "displacement") and not hasattr(self, what):
            raise ValueError(f"DynamicsNet: this model computes no {what} (branches {self.branches})")
        out = self._shared(video, flow_fwd, wanted, what)
        out.update(self._heads(out["frames"], out.get("conv1"), out.get("displacement"), out.get("flow"), wanted))
        if what == "logits":
            out["logits"] = fuse_scores([out[b] for b in self.branches], self.fusion)
        return out

    def _shared(self, video: Tensor, flow_fwd: Tensor | None, wanted: Sequence[str], what: str = "") -> dict[str, Tensor]:
        """What the ``wanted`` branches share: ``frames`` ``(B·L, 3, H, W)``, ``conv1`` features,
        ``displacement`` maps ``(B·(L-1), 2, h, w)``, per-pair ``flow`` ``(B·(L-1), 2, H, W)``."""
        out = {"frames": self._frames(video)}
        if self.uses("features", wanted) or what in ("conv1", "displacement"):
            out["conv1"] = self.conv1(out["frames"])  # (B·L, 64w, H/s, W/s)
        if self.uses("displacement", wanted) or what == "displacement":
            out["displacement"] = self.displacement(out["conv1"], num_frames=self.num_frames)
        if self.uses("flow", wanted):
            out["flow"] = self._pair_flows(flow_fwd, video)
        return out

    def _heads(self, frames: Tensor, feats: Tensor | None, disp: Tensor | None, flow: Tensor | None,
               wanted: Sequence[str]) -> dict[str, Tensor]:
        """Each wanted branch's own layers on the shared tensors -> ``{branch: (N, classes)}`` after consensus."""
        k, length = self.num_segments, self.num_frames
        out: dict[str, Tensor] = {}
        if "static" in wanted:
            out["static"] = segment_consensus(self.static(feats, length), k)
        if "motion" in wanted:
            maps = disp if self.motion_input == "disp" else flow
            if self.motion_layout == "stack":
                out["motion"] = segment_consensus(self.motion(stack_pairs(maps, length - 1)), k)
            else:  # per pair at the conv1 resolution (an external flow is resampled to it)
                s = self.conv1_stride
                maps = resize_flow(maps, (-(-int(frames.shape[-2]) // s), -(-int(frames.shape[-1]) // s)))
                out["motion"] = segment_consensus(self.motion(maps, length - 1), k)
        if "change" in wanted:
            x = self._change_input(frames, feats, disp, flow)
            out["change"] = segment_consensus(self.change(x, length - 1), k)
        return out

    def forward(self, video: Tensor, flow_fwd: Tensor | None = None, flow_bwd: Tensor | None = None) -> Tensor:
        # flow_bwd: accepted (the trainer passes what the data holds) and not used.
        return self.compute(video, flow_fwd, "logits")

    def profile_parts(self, inputs: Sequence[Tensor]) -> dict[str, tuple[nn.Module, tuple[Tensor, ...]]]:
        """The profile job's hook (``repro.jobs.profile``): ``{part: (module, module_inputs)}`` for
        Table 9's per-part MACs and latency, every part timed in the same run.

        * ``conv1``: the shared low-level features, on the frames;
        * ``displacement``: conv1 + cost volume + soft-argmax from the video -- the paper's shared
          "displacement map processing" (Table 9's bracketed 15.4 ms);
        * ``static`` / ``motion`` / ``change``: a branch's **own** layers on the shared tensors
          (static: the temporal-pool net on conv1 features; motion: the net on the displacement
          maps or flows; change: the (warped) difference and its net), with the consensus;
        * ``<branch>_path``: everything a branch needs from the video to its logits (Table 3's FPS
          of the motion branch = ``motion_path``);
        * ``full``: the model; ``shared``: ``displacement``, when the model builds displacement maps;
          ``own``: everything after ``shared`` (a one-branch model's own layers; for several
          branches all their own layers and the fusion), or the whole model when nothing is shared.
        """
        video, flow_fwd = inputs[0], (inputs[1] if len(inputs) > 1 else None)
        with torch.no_grad():
            done = self._shared(video, flow_fwd, self.branches, "displacement" if self.uses("displacement") else "")
        parts: dict[str, tuple[nn.Module, tuple[Tensor, ...]]] = {"full": (self, tuple(inputs))}
        if "conv1" in done:
            parts["conv1"] = (self.conv1, (done["frames"],))
        if "displacement" in done:
            parts["displacement"] = (_Part(self, "displacement", {"conv1": self.conv1, "displacement": self.displacement}),
                                     (video,))
        for b in self.branches:
            parts[b] = _heads_part(self, (b,), done)
            mods = {b: getattr(self, b), **{m: getattr(self, m) for m in ("conv1", "displacement")
                                            if self.uses("features" if m == "conv1" else m, (b,))}}
            parts[f"{b}_path"] = (_Part(self, b, mods), tuple(inputs))
        if "displacement" in parts:  # Table 9: "(15.4) + 3.33" = shared displacement map + own layers
            parts["shared"] = parts["displacement"]
            parts["own"] = _heads_part(self, self.branches, done)
        else:  # nothing shared (the static column, 1.19 ms): the whole model is the branch's own time
            parts["own"] = parts["full"]
        for module, _ in parts.values():
            # a wrapper starts in training mode; profiling restores the mode it found (recursively)
            module.train(self.training)
        return parts


class _Part(nn.Module):
    """A piece of a :class:`DynamicsNet` from the video (``compute(video, flow_fwd, what)``), with
    only the submodules it uses registered (so its parameters count per piece)."""

    def __init__(self, model: DynamicsNet, what: str, modules: dict[str, nn.Module]) -> None:
        super().__init__()
        object.__setattr__(self, "_model", model)  # not registered: params are those of `parts`
        self.what = what
        self.parts = nn.ModuleDict(modules)

    def forward(self, video: Tensor, flow_fwd: Tensor | None = None, flow_bwd: Tensor | None = None) -> Tensor:
        return self._model.compute(video, flow_fwd, self.what)


class _HeadsModule(nn.Module):
    """The own layers of some branches on pre-computed shared tensors (``names`` in order)."""

    def __init__(self, model: DynamicsNet, branches: tuple[str, ...], names: tuple[str, ...]) -> None:
        super().__init__()
        object.__setattr__(self, "_model", model)
        self.branches, self.names = branches, names
        self.parts = nn.ModuleDict({b: getattr(model, b) for b in branches})

    def forward(self, *tensors: Tensor) -> Tensor:
        got = dict(zip(self.names, tensors))
        out = self._model._heads(got["frames"], got.get("conv1"), got.get("displacement"), got.get("flow"),
                                 self.branches)
        return fuse_scores([out[b] for b in self.branches], self._model.fusion)


def _heads_part(model: DynamicsNet, branches: tuple[str, ...], done: dict[str, Tensor]) -> tuple[nn.Module, tuple[Tensor, ...]]:
    """``(module, inputs)`` for the own layers of ``branches`` given the shared tensors ``done``."""
    names = tuple(n for n in ("frames", "conv1", "displacement", "flow") if n in done)
    return _HeadsModule(model, branches, names), tuple(done[n] for n in names)


# ------------------------------------------------------------------------------ checkpoints
def load_dynamics_pretrained(model: DynamicsNet, path: str | os.PathLike) -> list[str]:
    """Initialise every branch from one BN-Inception checkpoint (§4.1 item (1): "the weights of
    all branches are initialized with ImageNet pre-trained BN-Inception"); returns keys loaded.

    The shared conv1 takes the checkpoint's conv1; the motion net's first conv (its 2(T-1)-channel
    conv1, or with ``motion_layout="pairs"`` its 2-channel ``conv2_3x3_reduce``) gets TSN's
    cross-modality init (the filters averaged over input channels, replicated).  ``fc`` is
    never loaded (new classes).  A mis-shaped tensor (width differs) raises one ``ValueError``."""
    state = {tsn_key(k): v for k, v in load_checkpoint_state(path).items() if not tsn_key(k).startswith("fc.")}
    own = model.state_dict()
    new: dict[str, Tensor] = {}
    for key, target in own.items():
        if key.endswith("num_batches_tracked") or ".fc." in key or key.startswith("displacement."):
            continue
        src = key.split(".", 1)[1]  # drop the branch prefix
        src = src.removeprefix("net.")
        if src not in state:
            raise ValueError(f"pretrained_file '{os.fspath(path)}': missing '{src}' (for '{key}')")
        value = state[src]
        if value.dim() == 4 and value.shape[1] != target.shape[1] and value.shape[0] == target.shape[0]:
            # cross-modality init (TSN): conv1 of a flow/diff stack, or conv2_3x3_reduce of per-pair maps
            value = value.mean(dim=1, keepdim=True).expand_as(target).clone()
        if value.shape != target.shape:
            raise ValueError(f"pretrained_file '{os.fspath(path)}': '{src}' has shape {tuple(value.shape)}, "
                             f"'{key}' expects {tuple(target.shape)} (width differs?)")
        new[key] = value
    model.load_state_dict({**own, **new})
    return sorted(new)


# ------------------------------------------------------------------------------ constructors
def _create(pretrained_file: str | None = None, **kwargs: Any) -> DynamicsNet:
    model = DynamicsNet(**kwargs)
    if pretrained_file is not None:
        load_dynamics_pretrained(model, pretrained_file)
    return model


_INPUT = (1, 3, 8, 224, 224)  # one 8-frame snippet (§4.2), Table 9's input
_TAGS = ("dynamics", "tsn", "2d")
# The contract test's small input: two 8-frame snippets at 64² (conv1 stride 2 -> 32² maps; the
# stride-2 blocks see even sizes; the motion net's 1x1 maps at inception_4e need a batch of 2 for BN).
_TEST_INPUT = (2, 3, 8, 64, 64)


@register_model(paper="dynamics", default_input=_INPUT, test_input=_TEST_INPUT, tags=_TAGS)
def dynamics_static_bninception(pretrained_file: str | None = None, **kwargs: Any) -> DynamicsNet:
    """Static-appearance branch alone (Tables 1, 2, 5): BN-Inception + gradual/late 3D pooling."""
    model_args = dict(branches=("static",))
    return _create(pretrained_file, **dict(model_args, **kwargs))


@register_model(paper="dynamics", default_input=_INPUT, test_input=_TEST_INPUT, tags=_TAGS)
def dynamics_motion_bninception(pretrained_file: str | None = None, **kwargs: Any) -> DynamicsNet:
    """Apparent-motion branch alone (Table 5 "Displacement Map"): cost volume -> displacement maps -> BN-Inception."""
    # conv1 stride 1: the paper's 224 x 224 displacement map (Table 3's best row); stride 2 gives
    # the 112 map (with motion_layout="stack" its net then needs motion_conv1_stride=1: 112 is no
    # multiple of 32)
    model_args = dict(branches=("motion",), conv1_stride=1)
    return _create(pretrained_file, **dict(model_args, **kwargs))


@register_model(paper="dynamics", default_input=_INPUT, test_input=_TEST_INPUT, tags=_TAGS)
def dynamics_change_bninception(pretrained_file: str | None = None, **kwargs: Any) -> DynamicsNet:
    """Appearance-change branch alone (Table 4): warped conv1-feature differences -> BN-Inception."""
    model_args = dict(branches=("change",))
    return _create(pretrained_file, **dict(model_args, **kwargs))


@register_model(paper="dynamics", default_input=_INPUT, test_input=_TEST_INPUT, tags=_TAGS)
def dynamics_rgb_diff_bninception(pretrained_file: str | None = None, **kwargs: Any) -> DynamicsNet:
    """TSN RGB-Diff as the appearance-change branch (Table 4 "No warping, RGB")."""
    model_args = dict(branches=("change",), change_input="rgb_diff")
    return _create(pretrained_file, **dict(model_args, **kwargs))


@register_model(paper="dynamics", default_input=_INPUT, test_input=_TEST_INPUT, tags=_TAGS)
def dynamics_static_motion_bninception(pretrained_file: str | None = None, **kwargs: Any) -> DynamicsNet:
    """Static + apparent motion, scores averaged (Table 6 "Static + Disp. Map"; brief §A.7: Table 3's
    own rows and Table 5's "Full model" are this two-branch fusion)."""
    # conv1 stride 1: the paper's 224 x 224 displacement map (Table 3's best row); stride 2 gives
    # the 112 map (with motion_layout="stack" its net then needs motion_conv1_stride=1: 112 is no
    # multiple of 32)
    model_args = dict(branches=("static", "motion"), conv1_stride=1)
    return _create(pretrained_file, **dict(model_args, **kwargs))


@register_model(paper="dynamics", default_input=_INPUT, test_input=_TEST_INPUT, tags=_TAGS)
def dynamics_full_bninception(pretrained_file: str | None = None, **kwargs: Any) -> DynamicsNet:
    """All three branches on shared conv1 features, scores averaged (§3.1, Fig. 2; Tables 6, 7, 8, 9)."""
    # conv1 stride 1: the paper's 224 x 224 displacement map (Table 3's best row); stride 2 gives
    # the 112 map (with motion_layout="stack" its net then needs motion_conv1_stride=1: 112 is no
    # multiple of 32)
    model_args = dict(branches=BRANCHES, conv1_stride=1)
    return _create(pretrained_file, **dict(model_args, **kwargs))
