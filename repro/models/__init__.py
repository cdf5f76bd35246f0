"""Model families (one file each), their shared builder, and the model contract.

* :mod:`repro.models.contract` -- what every registered model declares (inputs, example inputs,
  ``ModelOutput``, training stages).
* :mod:`repro.models._builder` -- weights: checkpoint files, I3D inflation, torchvision key maps.
* :mod:`repro.models.temporal_positions` -- TrajectoryNet's Caffe-style positions -> module paths.
* families: :mod:`~repro.models.video_resnet` (C2D/TSN, R3D, MC3, R(2+1)D, P3D, S3D),
  :mod:`~repro.models.tvnet` (TVNet flow networks), :mod:`~repro.models.tvnet_action` (TVNet
  Table 3 classifiers), :mod:`~repro.models.tvnet_losses`, :mod:`~repro.models.motionnet`,
  :mod:`~repro.models.motionnet_pretrain`, :mod:`~repro.models.trajectorynet`,
  :mod:`~repro.models.bninception` (TSN's BN-Inception), :mod:`~repro.models.dynamics`,
  :mod:`~repro.models.lgd` (LGD-2D / LGD-3D).

Importing this package imports no family; :mod:`repro.models.catalog` imports them all (the
registry does so on its first lookup).
"""
