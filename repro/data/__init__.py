"""Data layer of repro: the built-in motion benchmark, real data set readers, sampling, transforms.

Modules (import them directly; nothing heavy is imported here):

* :mod:`repro.data.synth` -- the built-in benchmark: ``generate``, ``render_clip``, ``PRESETS``.
* :mod:`repro.data.datasets` -- ``build_dataset(name, root, split, ...)`` for ``synth``,
  ``ucf101``, ``hmdb51``, ``sthv1``, ``kinetics400``, ``kinetics600`` and ``middlebury``.
* :mod:`repro.data.readers` -- annotation readers (official split files / CSVs).
* :mod:`repro.data.sampling` -- dense ``frames x step`` clips, TSN segments, multi-clip testing.
* :mod:`repro.data.transforms` -- crops, multi-scale crop, scale jitter, flips, 10/3-crop views,
  applied consistently to optical flow.
* :mod:`repro.data.video_io` -- PyAV (or decord) decoding, deterministic video writing.
* :mod:`repro.data.flo` -- Middlebury ``.flo`` files.
* :mod:`repro.data.commands` -- ``python -m repro data synth``.
"""
