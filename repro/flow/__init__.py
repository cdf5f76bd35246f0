"""Optical flow: TVNet and classical methods behind one interface, the flow CLI and flowbench.

* :mod:`repro.flow.methods` -- ``create_flow_method(name)`` -> ``method(frame0, frame1)``
  returning the forward flow ``(H, W, 2)`` float32 in pixels (channel 0 = x).
* :mod:`repro.flow.pairs` -- frame pairs with ground truth (built-in benchmark, exact warped
  textures, scikit-image's stereo pair, Middlebury folders).
* :mod:`repro.flow.train` -- ``train_tvnet_on_pairs``, ``evaluate_epe`` (TVNet Table 1).
* :mod:`repro.flow.bench` -- flowbench (EPE, rho error, FPS).
* :mod:`repro.flow.viz`, :mod:`repro.flow.quantize` -- colour wheel; two-stream JPEG storage.
* :mod:`repro.flow.commands` -- ``python -m repro flow`` / ``flowbench``.

Submodules are imported on use (OpenCV and scikit-image load only when needed).
"""
