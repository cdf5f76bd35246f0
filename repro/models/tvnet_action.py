"""TVNet Table 3's classifiers (Fan et al., CVPR 2018, Sec. 4.3 and 5.2).

* ``tvnet_{10,30,50,3_1_10,1_3_10}_action`` -- :class:`TVNetActionNet`: TVNet computes the flows
  of a clip inside the network and :class:`FlowStackClassifier` classifies them (Fig. 2b); three
  ``tvnet_mode`` s give Table 3's bottom rows.  The flow networks alone are ``tvnet_*`` in
  :mod:`repro.models.tvnet` (a registered name never changes the type it returns).
* ``flow_stream_net`` -- :class:`FlowStreamNet`: the same classifier on flow computed outside the
  network (Table 3's baselines); it declares the inputs ``("video", "flow_fwd", "flow_bwd")``.
"""
from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn as nn

from repro.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from repro.models._builder import load_weights_into
from repro.models.contract import FLOW_INPUTS, ModelOutput, VideoModel
from repro.models.tvnet import TVNet, build_tvnet
from repro.models.tvnet_losses import tvnet_flow_loss
from repro.registry import register_model

__all__ = [
    "TVNetMode",
    "FLOW_LOSS_WEIGHT",
    "SmallFlowCNN",
    "FlowStackClassifier",
    "TVNetActionNet",
    "FlowStreamNet",
    "flow_stream_net",
]

TVNetMode = Literal["frozen", "finetune", "finetune_flow_loss"]
#: Eq. (13): ``L = L_c + lambda L_f`` with ``lambda = 0.1`` (Sec. 4.3).
FLOW_LOSS_WEIGHT = 0.1


class SmallFlowCNN(nn.Sequential):
    """A small 2-D CNN for stacked flow fields (mini-scale stand-in for BN-Inception): four
    3x3 conv-BN-ReLU stages (widths ``w, 2w, 4w, 4w``, the last three stride 2), global average
    pooling, dropout and a linear classifier."""

    def __init__(self, in_chans: int, num_classes: int, width: int = 16, dropout: float = 0.5) -> None:
        widths = (width, 2 * width, 4 * width, 4 * width)
        layers: list[nn.Module] = []
        prev = in_chans
        for i, out in enumerate(widths):
            layers += [nn.Conv2d(prev, out, 3, stride=1 if i == 0 else 2, padding=1, bias=False),
                       nn.BatchNorm2d(out), nn.ReLU(inplace=True)]
            prev = out
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout), nn.Linear(prev, num_classes)]
        super().__init__(*layers)


class FlowStackClassifier(nn.Module):
    """The temporal-stream classifier of Sec. 5.2: the ``T-1`` flow fields of a ``T``-frame clip,
    x/y interleaved as ``2(T-1)`` channels, divided by ``flow_scale``, into a 2-D CNN.

    The paper uses BN-Inception with cross-modality ImageNet initialisation; here ``backbone`` is
    ``"small"`` (:class:`SmallFlowCNN` of ``width``, for the mini benchmark) or any timm model
    name, randomly initialised (no hub weights).  ``flow_scale`` (the two-stream bound, 20 px) is
    the continuous analogue of the JPEG mapping the paper applies to stored flow.
    """

    def __init__(self, num_classes: int, num_frames: int, backbone: str = "resnet18", width: int = 16,
                 flow_scale: float = 20.0, **backbone_kwargs: Any) -> None:
        super().__init__()
        if num_frames < 2:
            raise ValueError(f"num_frames: expected >= 2, got {num_frames}")
        if num_classes < 1:
            raise ValueError(f"num_classes: expected >= 1, got {num_classes}")
        self.num_frames, self.flow_scale = int(num_frames), float(flow_scale)
        in_chans = 2 * (self.num_frames - 1)
        if backbone == "small":
            self.cnn: nn.Module = SmallFlowCNN(in_chans, num_classes, width, **backbone_kwargs)
        else:
            import timm

            self.cnn = timm.create_model(backbone, pretrained=False, num_classes=num_classes, in_chans=in_chans,
                                         **backbone_kwargs)

    def forward(self, flow: torch.Tensor) -> torch.Tensor:
        """``flow (N, 2, T-1, H, W)`` in pixels -> logits ``(N, num_classes)``."""
        if flow.dim() != 5 or flow.shape[1] != 2 or flow.shape[2] != self.num_frames - 1:
            raise ValueError(f"flow: expected (N, 2, T-1={self.num_frames - 1}, H, W), got {tuple(flow.shape)}")
        stacked = flow.transpose(1, 2).flatten(1, 2) / self.flow_scale  # (N, 2(T-1), H, W), x/y interleaved
        return self.cnn(stacked)


def _clip_pairs(clip: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(N, C, T, H, W)`` -> frames ``t`` and ``t+1`` as two ``(N(T-1), C, H, W)`` batches."""
    n, c, t, h, w = clip.shape
    first = clip[:, :, :-1].transpose(1, 2).reshape(n * (t - 1), c, h, w)
    second = clip[:, :, 1:].transpose(1, 2).reshape(n * (t - 1), c, h, w)
    return first, second


class TVNetActionNet(VideoModel):
    """End-to-end action recognition (Fig. 2b, Sec. 4.3): TVNet computes the flow of every pair
    of consecutive frames inside the network and :class:`FlowStackClassifier` classifies them.

    ``forward(video (N, 3, T, H, W))`` -> logits.  ``forward_output`` adds, in training mode with
    ``tvnet_mode="finetune_flow_loss"``, the loss ``"flow"`` = ``lambda * L_f``, the weighted flow
    term of Eq. (13) (the engine adds it to the cross-entropy ``L_c``).

    ``tvnet_mode`` (Table 3's bottom rows):

    * ``"frozen"`` -- "TVNet-50 (no training)": TVNet is plain TV-L1 (every TVNet parameter
      frozen, run without autograd); only the classifier learns.
    * ``"finetune"`` -- "TVNet-50 (no flow loss)": TVNet's filters and ``u0`` (built with
      ``trainable="all"``) learn from the classification loss alone.
    * ``"finetune_flow_loss"`` -- "TVNet-50": as ``finetune`` plus ``lambda L_f``.

    ``video`` is ImageNet-normalised (what the engine's datasets give); it is mapped back to
    [0, 1] RGB before TVNet's greyscale conversion (``input_mean``/``input_std``; pass
    ``(0, 0, 0)``/``(1, 1, 1)`` for raw frames).
    """

    def __init__(self, tvnet: TVNet, num_classes: int, num_frames: int = 6, backbone: str = "resnet18", *,
                 tvnet_mode: TVNetMode = "frozen", flow_loss_weight: float = FLOW_LOSS_WEIGHT, width: int = 16,
                 flow_scale: float = 20.0, input_mean: tuple[float, float, float] = IMAGENET_MEAN,
                 input_std: tuple[float, float, float] = IMAGENET_STD, **backbone_kwargs: Any) -> None:
        super().__init__()
        if tvnet_mode not in ("frozen", "finetune", "finetune_flow_loss"):
            raise ValueError(f"tvnet_mode: expected 'frozen', 'finetune' or 'finetune_flow_loss', got {tvnet_mode!r}")
        if tvnet_mode != "frozen" and tvnet.trainable != "all":
            raise ValueError(f"tvnet_mode={tvnet_mode!r} fine-tunes TVNet: build it with trainable='all' "
                             f"(got trainable={tvnet.trainable!r})")
        self.tvnet = tvnet
        self.tvnet_mode: TVNetMode = tvnet_mode
        self.flow_loss_weight = float(flow_loss_weight)
        self.num_frames = int(num_frames)
        self.classifier = FlowStackClassifier(num_classes, num_frames, backbone, width, flow_scale, **backbone_kwargs)
        self.register_buffer("input_mean", torch.tensor(input_mean).view(1, 3, 1, 1, 1), persistent=False)
        self.register_buffer("input_std", torch.tensor(input_std).view(1, 3, 1, 1, 1), persistent=False)
        if tvnet_mode == "frozen":
            self.tvnet.requires_grad_(False)

    def compute_flow(self, video: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``video (N, 3, T, H, W)`` -> ``(flow (N, 2, T-1, H, W), frames in [0, 1])``."""
        if video.dim() != 5 or video.shape[1] != 3 or video.shape[2] != self.num_frames:
            raise ValueError(f"video: expected (N, 3, T={self.num_frames}, H, W), got {tuple(video.shape)}")
        frames = video * self.input_std + self.input_mean
        if self.tvnet_mode == "frozen":
            with torch.no_grad():  # nothing upstream of the classifier learns: skip TVNet's autograd graph
                return self.tvnet(frames), frames
        return self.tvnet(frames), frames

    def forward_with_flow(self, video: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits and the TVNet flows ``(N, 2, T-1, H, W)``."""
        flow, _ = self.compute_flow(video)
        return self.classifier(flow), flow

    def flow_loss(self, flow: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
        """``L_f`` (Eq. 1 / 13) of the clip's flows, averaged over pairs."""
        first, second = _clip_pairs(frames)
        pair_flow = flow.transpose(1, 2).reshape(-1, 2, *flow.shape[-2:])
        return tvnet_flow_loss(self.tvnet, pair_flow, first, second)

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        flow, _ = self.compute_flow(video)
        return self.classifier(flow)

    def forward_output(self, video: torch.Tensor) -> ModelOutput:
        flow, frames = self.compute_flow(video)
        logits = self.classifier(flow)
        if self.training and self.tvnet_mode == "finetune_flow_loss":
            return ModelOutput(logits, {"flow": self.flow_loss_weight * self.flow_loss(flow, frames)})
        return ModelOutput(logits)


class FlowStreamNet(VideoModel):
    """The baselines' temporal stream (Table 3, middle): :class:`FlowStackClassifier` on flow
    computed *outside* the network by a classical method (TV-L1, DIS-Fast, DeepFlow; the engine
    computes it once per video, RunConfig ``flow: <method>``).

    ``forward(video, flow_fwd, flow_bwd=None)``: ``flow_fwd (N, 2, T, H, W)`` with
    ``flow_fwd[:, :, t]`` the flow from frame ``t`` to ``t+1``; the ``T-1`` flows between the
    clip's frames are used (the last, pointing past the clip, is not), as TVNet's.  The video
    and ``flow_bwd`` are not used.
    """

    inputs = ("video", *FLOW_INPUTS)

    def __init__(self, num_classes: int, num_frames: int = 6, backbone: str = "resnet18", *, width: int = 16,
                 flow_scale: float = 20.0, **backbone_kwargs: Any) -> None:
        super().__init__()
        self.num_frames = int(num_frames)
        self.classifier = FlowStackClassifier(num_classes, num_frames, backbone, width, flow_scale, **backbone_kwargs)

    def forward(self, video: torch.Tensor, flow_fwd: torch.Tensor | None = None,
                flow_bwd: torch.Tensor | None = None) -> torch.Tensor:
        if flow_fwd is None:
            raise ValueError("flow_fwd: FlowStreamNet needs pre-computed flow (N, 2, T, H, W) "
                             "(set the run's 'flow:' to a repro.flow method)")
        if flow_fwd.dim() != 5 or flow_fwd.shape[2] != self.num_frames or flow_fwd.shape[0] != video.shape[0]:
            raise ValueError(f"flow_fwd: expected (N={video.shape[0]}, 2, T={self.num_frames}, H, W), "
                             f"got {tuple(flow_fwd.shape)}")
        return self.classifier(flow_fwd[:, :, : self.num_frames - 1])


# ----------------------------------------------------------------------------------------------
# Registered classifiers (Table 3): flows of a 6-frame clip into a 2-D CNN (Sec. 5.2)
# ----------------------------------------------------------------------------------------------
_CLASSIFIER = dict(paper="tvnet", default_input=(1, 3, 6, 112, 112), test_input=(2, 3, 6, 32, 32))
_ACTION_KEYS = ("num_frames", "backbone", "flow_scale", "tvnet_mode", "flow_loss_weight", "width", "dropout",
                "input_mean", "input_std")


def _create_action_net(variant: str, scales: int, warps: int, iters: int, num_classes: int = 101,
                       pretrained_file: str | None = None, **kwargs: Any) -> TVNetActionNet:
    """:class:`TVNetActionNet` on TVNet-``scales``-``warps``-``iters``; the other ``kwargs`` build TVNet.
    ``tvnet_mode`` "finetune"/"finetune_flow_loss" builds TVNet with ``trainable="all"``
    (``image_size`` then required: the size of ``u0``, i.e. the training crop)."""
    action_kwargs = {k: kwargs.pop(k) for k in _ACTION_KEYS if k in kwargs}
    if action_kwargs.get("tvnet_mode", "frozen") != "frozen":
        kwargs.setdefault("trainable", "all")
    tvnet = build_tvnet(variant.removesuffix("_action"), scales, warps, iters, **kwargs)
    model = TVNetActionNet(tvnet, num_classes, **action_kwargs)
    if pretrained_file is not None:
        load_weights_into(model, pretrained_file)
    return model


@register_model(**_CLASSIFIER, tags=("baseline", "flow_input"))
def flow_stream_net(num_classes: int = 101, pretrained_file: str | None = None, **kwargs: Any) -> FlowStreamNet:
    """Table 3's baseline temporal stream: :class:`FlowStreamNet` on pre-computed flow
    (``forward(video, flow_fwd, flow_bwd)``)."""
    model = FlowStreamNet(num_classes, **kwargs)
    if pretrained_file is not None:
        load_weights_into(model, pretrained_file)
    return model


@register_model(**_CLASSIFIER)
def tvnet_10_action(**kwargs: Any) -> TVNetActionNet:
    """TVNet-10 (1-1-10) end-to-end action net."""
    return _create_action_net("tvnet_10_action", **dict(dict(scales=1, warps=1, iters=10), **kwargs))


@register_model(**_CLASSIFIER)
def tvnet_30_action(**kwargs: Any) -> TVNetActionNet:
    """TVNet-30 (1-1-30) end-to-end action net."""
    return _create_action_net("tvnet_30_action", **dict(dict(scales=1, warps=1, iters=30), **kwargs))


@register_model(**_CLASSIFIER)
def tvnet_50_action(**kwargs: Any) -> TVNetActionNet:
    """TVNet-50 (1-1-50) end-to-end action net, Table 3's "TVNet-50" rows."""
    return _create_action_net("tvnet_50_action", **dict(dict(scales=1, warps=1, iters=50), **kwargs))


@register_model(**_CLASSIFIER)
def tvnet_3_1_10_action(**kwargs: Any) -> TVNetActionNet:
    """TVNet-3-1-10 end-to-end action net."""
    return _create_action_net("tvnet_3_1_10_action", **dict(dict(scales=3, warps=1, iters=10), **kwargs))


@register_model(**_CLASSIFIER)
def tvnet_1_3_10_action(**kwargs: Any) -> TVNetActionNet:
    """TVNet-1-3-10 end-to-end action net."""
    return _create_action_net("tvnet_1_3_10_action", **dict(dict(scales=1, warps=3, iters=10), **kwargs))
