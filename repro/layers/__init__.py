"""Reusable network layers, one concept per module (timm's ``layers`` in spirit).

* :mod:`repro.layers.conv_makers` -- R3D / MC3 / R(2+1)D conv makers (Tran et al. CVPR 2018).
* :mod:`repro.layers.separable` -- the ``1 x 3 x 3`` spatial and ``3 x 1 x 1`` temporal convs of
  separable (S3D / P3D) networks.
* :mod:`repro.layers.residual_blocks` -- video residual blocks (torchvision's ``BasicBlock``,
  S3D basic block, S3D / P3D-A bottleneck) and their shortcut.
* :mod:`repro.layers.stems` -- the stems of R3D, R(2+1)D and separable ResNets.
* :mod:`repro.layers.heads` -- the timm-style ``forward_head`` (pool, dropout, fc).
* :mod:`repro.layers.weight_init` -- torchvision's video-ResNet initialisation.
* :mod:`repro.layers.width` -- channel counts under a width multiplier.

This package imports none of its modules: import the one you need.
"""
