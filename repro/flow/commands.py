"""CLI: ``python -m repro flow ...`` and ``python -m repro flowbench ...``.

    python -m repro flow IMG0 IMG1 --method tvnet-50 --out flow.flo [--viz flow.png]
    python -m repro flow VIDEO --method tvl1 --out DIR [--as jpg|npy|flo] [--bound 20]
    python -m repro flowbench [--method M ...] [--size 240x320 ...] [--middlebury DIR] [--format json]

Video output (``--as jpg``, the default) is stored the two-stream way: ``DIR/x_00001.jpg`` and
``DIR/y_00001.jpg`` hold the flow from frame 0 to frame 1, quantised within ``--bound`` pixels
(:mod:`repro.flow.quantize`); ``--as npy`` / ``--as flo`` write ``DIR/flow_00001.npy`` /
``.flo`` float fields instead.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from repro.cli_output import emit as _emit
from repro.cli_output import fail as _fail

__all__ = ["add_commands", "cmd_flow", "cmd_flowbench", "iter_video_frames", "parse_size"]

_IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp"}


def parse_size(text: str) -> tuple[int, int] | None:
    """``"240x320"`` -> (240, 320) (height x width); ``"native"`` -> None."""
    if text.strip().lower() == "native":
        return None
    try:
        height, width = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size {text!r}: expected HEIGHTxWIDTH such as 240x320, or 'native'") from None
    if height < 8 or width < 8:
        raise argparse.ArgumentTypeError(f"size {text!r}: height and width must be >= 8")
    return height, width


def _apply_threads(args: argparse.Namespace) -> None:
    threads = getattr(args, "threads", None)
    if threads:
        import cv2
        import torch

        torch.set_num_threads(threads)
        cv2.setNumThreads(threads)




# ----------------------------------------------------------------------------------------------
# flow
# ----------------------------------------------------------------------------------------------


def iter_video_frames(path: str | Path) -> Iterator[np.ndarray]:
    """Decode a video one frame at a time as uint8 ``(H, W, 3)`` RGB (PyAV; constant memory)."""
    import av

    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, OSError) as err:
        raise ValueError(f"{path}: cannot open as a video ({err})") from None
    with container:
        if not container.streams.video:
            raise ValueError(f"{path}: no video stream")
        for frame in container.decode(video=0):
            yield frame.to_ndarray(format="rgb24")


def _count_frames(path: Path) -> int | None:
    try:
        from repro.data.video_io import count_frames

        return count_frames(path)
    except Exception:  # noqa: BLE001 - only used for the progress bar's total
        return None


def _write_flow_file(path: Path, flow: np.ndarray) -> None:
    if path.suffix == ".flo":
        from repro.data.flo import write_flo

        write_flo(path, flow)
    elif path.suffix == ".npy":
        from repro.fileio import atomic_save_npy

        atomic_save_npy(path, flow.astype(np.float32))
    else:
        raise ValueError(f"--out {path}: expected a .flo or .npy file name")


def _write_viz(path: Path, flow: np.ndarray) -> None:
    from repro.data.video_io import write_png
    from repro.flow.viz import flow_to_colour

    if path.suffix.lower() != ".png":
        raise ValueError(f"--viz {path}: expected a .png file name")
    write_png(path, flow_to_colour(flow))


def cmd_flow(args: argparse.Namespace) -> int:
    if args.inputs == ["extract"]:
        return cmd_flow_extract(args)
    if args.out is None:
        from repro.cli_output import fail

        return fail("flow: --out is required (pair: FILE.flo or FILE.npy; video: output folder)")
    from repro.flow.methods import create_flow_method

    _apply_threads(args)
    inputs = [Path(p) for p in args.inputs]
    if len(inputs) not in (1, 2):
        return _fail("flow: give two images (IMG0 IMG1) or one video")
    for path in inputs:
        if not path.exists():
            raise FileNotFoundError(f"flow: input not found: {path}")
    try:
        is_tvnet = args.method.lower().startswith("tvnet")
        tvnet_only = {"weights": args.weights, "compile": args.compile} if is_tvnet else {}
        if not tvnet_only and args.weights:
            raise ValueError(f"--weights: only TVNet methods take trained weights, not {args.method!r}")
        method = create_flow_method(args.method, batch_size=args.batch, **tvnet_only)
        if len(inputs) == 2:
            return _flow_pair(args, method, inputs)
        if inputs[0].suffix.lower() in _IMAGE_SUFFIXES:
            return _fail(f"flow: {inputs[0]} is an image; give a second image, or a video")
        return _flow_video(args, method, inputs[0])
    except ValueError as err:
        return _fail(str(err))


def _flow_pair(args: argparse.Namespace, method, inputs: list[Path]) -> int:
    from repro.data.video_io import read_image

    out = Path(args.out)
    if out.suffix not in (".flo", ".npy"):
        raise ValueError(f"--out {out}: expected a .flo or .npy file name for an image pair")
    if args.viz and Path(args.viz).suffix.lower() != ".png":  # checked before the flow file is written
        raise ValueError(f"--viz {args.viz}: expected a .png file name")
    frame0, frame1 = read_image(inputs[0]), read_image(inputs[1])
    if frame0.shape != frame1.shape:
        raise ValueError(f"{inputs[0]} is {frame0.shape[1]}x{frame0.shape[0]} but {inputs[1]} is "
                         f"{frame1.shape[1]}x{frame1.shape[0]}; the frames must have the same size")
    start = time.perf_counter()
    flow = method(frame0, frame1)
    seconds = time.perf_counter() - start
    _write_flow_file(out, flow)
    if args.viz:
        _write_viz(Path(args.viz), flow)
    magnitude = np.sqrt((flow**2).sum(-1))
    payload = {"method": method.name, "inputs": [str(p) for p in inputs], "out": str(out), "viz": args.viz,
               "height": int(flow.shape[0]), "width": int(flow.shape[1]), "seconds": seconds,
               "mean_magnitude": float(magnitude.mean()), "max_magnitude": float(magnitude.max())}
    _emit(args, payload, f"{method.name}: {out} ({flow.shape[1]}x{flow.shape[0]}, mean |u| "
                         f"{payload['mean_magnitude']:.3f} px, {seconds:.3f} s)")
    return 0


def _flow_video(args: argparse.Namespace, method, video: Path) -> int:
    from tqdm import tqdm

    from repro.flow.quantize import write_flow_jpegs

    out = Path(args.out)
    if out.suffix in (".flo", ".npy", ".jpg", ".png"):
        raise ValueError(f"--out {out}: for a video, give a folder (it gets x_00001.jpg, y_00001.jpg, ...)")
    # Decode the first frame before creating anything: an unreadable input leaves no empty folder behind.
    frames = iter_video_frames(video)
    first = next(frames, None)
    if first is None:
        raise ValueError(f"{video}: no frames decoded")
    out.mkdir(parents=True, exist_ok=True)
    viz_dir = Path(args.viz) if args.viz else None
    if viz_dir is not None:
        viz_dir.mkdir(parents=True, exist_ok=True)
    total = _count_frames(video)
    bar = tqdm(total=None if total is None else max(total - 1, 0), desc=f"flow {method.name}", unit="pair",
               file=sys.stderr, disable=args.quiet)
    written = 0
    compute_seconds = 0.0

    def flush(frames0: list[np.ndarray], frames1: list[np.ndarray]) -> None:
        nonlocal written, compute_seconds
        start = time.perf_counter()
        flows = method.batch(frames0, frames1)
        compute_seconds += time.perf_counter() - start
        for flow in flows:
            written += 1
            if args.store == "jpg":
                write_flow_jpegs(out, written, flow, bound=args.bound)
            else:
                _write_flow_file(out / f"flow_{written:05d}.{args.store}", flow)
            if viz_dir is not None:
                _write_viz(viz_dir / f"flow_{written:05d}.png", flow)
            bar.update(1)

    previous = first
    pending0: list[np.ndarray] = []
    pending1: list[np.ndarray] = []
    for frame in frames:
        if previous is not None:
            pending0.append(previous)
            pending1.append(frame)
            if len(pending0) >= args.batch:
                flush(pending0, pending1)
                pending0, pending1 = [], []
        previous = frame
    if pending0:
        flush(pending0, pending1)
    bar.close()
    payload = {"method": method.name, "input": str(video), "out": str(out), "as": args.store,
               "bound": args.bound if args.store == "jpg" else None, "pairs": written,
               "compute_seconds": compute_seconds, "fps": written / compute_seconds if compute_seconds else None}
    what = f"x_/y_NNNNN.jpg (bound {args.bound:g} px)" if args.store == "jpg" else f"flow_NNNNN.{args.store}"
    _emit(args, payload, f"{method.name}: {written} flow fields -> {out}/ as {what}")
    return 0


# ----------------------------------------------------------------------------------------------
# flowbench
# ----------------------------------------------------------------------------------------------


def cmd_flow_extract(args: argparse.Namespace) -> int:
    """``flow extract``: a flow method on every video of a dataset, once (:mod:`repro.flow.extract`)."""
    from repro.cli_output import emit, fail
    from repro.flow.extract import extract_dataset

    if not args.dataset:
        return fail("flow extract: --dataset is required (ucf101, hmdb51, sthv1, kinetics400, kinetics600)")
    data_dir = getattr(args, "data_dir", None) or Path("data")
    try:
        rep = extract_dataset(args.dataset, data_dir, args.method, workers=args.workers, bound=args.bound,
                              limit=args.limit, progress=not args.quiet, threads=args.threads or 1)
    except (ValueError, FileNotFoundError) as e:
        return fail(f"flow extract: {e}")
    payload = {"method": rep.method, "dataset": rep.dataset, "out": str(rep.out), "videos": rep.total,
               "this_rank": rep.mine, "done_before": rep.done_before, "extracted": rep.extracted,
               "failed": rep.failed, "seconds": rep.seconds}
    emit(args, payload, f"{rep.method} flow of {rep.dataset}: {rep.extracted} videos extracted, {rep.done_before} "
                        f"already done, {len(rep.failed)} failed (of {rep.mine} for this process, {rep.total} in all) "
                        f"in {rep.seconds} s\n  under {rep.out}\n")
    return 1 if rep.failed else 0


def cmd_flowbench(args: argparse.Namespace) -> int:
    from repro.flow.bench import DEFAULT_METHODS, format_table, run_flowbench
    from repro.flow.pairs import middlebury_pairs, stereo_motorcycle_pair, synthetic_benchmark_pairs

    _apply_threads(args)
    methods = args.methods or list(DEFAULT_METHODS)
    sizes = args.sizes or [(240, 320)]
    datasets: dict[str, list | Callable] = {}
    try:
        if args.synth_pairs > 0:
            # Rendered natively at each size (exact GT); "native" uses the mini benchmark's 64x64.
            datasets["synth"] = lambda size: synthetic_benchmark_pairs(size or (64, 64), count=args.synth_pairs,
                                                                       seed=args.seed)
        if args.middlebury:
            datasets["middlebury"] = middlebury_pairs(args.middlebury)
        if not args.no_stereo:
            datasets["stereo_motorcycle"] = [stereo_motorcycle_pair()]
        if not datasets:
            return _fail("flowbench: no data (all of synth, stereo and --middlebury are off)")
        rows: list = []  # finished (size, data set) rows, appended as each finishes
        interrupted = False
        try:
            for size in sizes:
                resolved = {name: (d(size) if callable(d) else d) for name, d in datasets.items()}
                run_flowbench(methods, resolved, [size], batch=args.batch, weights=args.weights,
                              compile=args.compile, progress=not args.quiet, done=rows)
        except KeyboardInterrupt:
            interrupted = True
    except ValueError as err:
        return _fail(str(err))
    if interrupted and not rows:
        print("repro: interrupted before any (size, data set) finished; nothing kept"
              + (f" ({args.out} not written)" if args.out else ""), file=sys.stderr)
        return 130
    import torch

    payload = {"methods": methods, "sizes": ["native" if s is None else f"{s[0]}x{s[1]}" for s in sizes],
               "threads": torch.get_num_threads(), "compile": args.compile, "interrupted": interrupted,
               "rows": [r.to_dict() for r in rows]}
    text = format_table(rows) + f"(torch threads: {payload['threads']})\n"
    if args.out:
        from repro.fileio import atomic_write_json

        atomic_write_json(args.out, payload)
    _emit(args, payload, text)
    if interrupted:
        kept = sorted({f"{r.size} {r.dataset}" for r in rows})
        print(f"repro: interrupted; kept the {len(rows)} finished rows ({', '.join(kept)})"
              + (f" in {args.out}" if args.out else " above (no --out given)"), file=sys.stderr)
        return 130
    return 0


# ----------------------------------------------------------------------------------------------
# argparse wiring
# ----------------------------------------------------------------------------------------------


def add_commands(subparsers, common: Callable[[argparse.ArgumentParser], None] | None = None) -> None:
    """Add ``flow`` and ``flowbench``.  ``common`` adds the CLI's shared options (``--format``,
    ``--threads``, ``--quiet``, ...); without it these three are added here."""

    def shared(p: argparse.ArgumentParser) -> None:
        if common is not None:
            common(p)
        else:
            p.add_argument("--format", choices=("text", "json"), default="text", help="json: machine-readable stdout")
            p.add_argument("--threads", type=int, default=None, help="torch/OpenCV threads")
            p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")

    p = subparsers.add_parser(
        "flow", help="optical flow of an image pair, of every consecutive pair of a video, or of a whole dataset",
        description="Forward flow frame0 -> frame1 in pixels (channel 0 = x).  Methods: tvnet-N, tvnet-Ns-Nw-Ni, "
                    "tvl1, tvl1-Ns-Nw-Ni, dis-fast, dis-medium, deepflow, farneback, skimage-tvl1.  "
                    "`flow extract --dataset NAME --data-dir D --method tvl1 [--workers N]` pre-computes a method "
                    "for every video of a dataset into D/NAME/flow/<method>/<video>/ (resumable; under torchrun "
                    "the videos are shared among the ranks).",
    )
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="IMG0 IMG1, or one VIDEO, or `extract`")
    p.add_argument("--method", default="tvnet-50", help="flow method (default: %(default)s)")
    p.add_argument("--out", default=None, help="pair: FILE.flo or FILE.npy; video: output folder")
    p.add_argument("--dataset", default=None, help="extract: ucf101, hmdb51, sthv1, kinetics400, kinetics600")
    p.add_argument("--workers", type=int, default=1, help="extract: worker processes (default: 1)")
    p.add_argument("--limit", type=int, default=None, help="extract: only the first N videos (a trial)")
    p.add_argument("--viz", default=None, help="pair: colour-wheel PNG; video: folder of PNGs")
    p.add_argument("--weights", default=None, help="trained TVNet weights (file from save_tvnet or a state_dict)")
    p.add_argument("--as", dest="store", choices=("jpg", "npy", "flo"), default="jpg",
                   help="video storage: two-stream JPEGs x_/y_NNNNN.jpg (default), or float .npy/.flo")
    p.add_argument("--bound", type=float, default=20.0, help="JPEG quantisation bound in pixels (default: 20)")
    p.add_argument("--batch", type=int, default=8, help="pairs per TVNet batch for videos (default: 8)")
    p.add_argument("--compile", action="store_true",
                   help="TVNet: fuse each iteration with torch.compile (faster; first call compiles ~15 s)")
    shared(p)
    p.set_defaults(func=cmd_flow)

    b = subparsers.add_parser(
        "flowbench", help="EPE / rho error / FPS of every flow method on the same frames",
        description="Runs every method on the built-in benchmark's GT pairs, scikit-image's stereo pair (GT "
                    "disparity as horizontal flow, occlusions masked) and optionally a Middlebury folder.",
    )
    b.add_argument("--method", dest="methods", action="append", default=None,
                   help="a method to run (repeatable; default: tvnet-50, tvl1, tvl1-5-5-50, dis-fast, dis-medium, "
                        "deepflow, farneback, skimage-tvl1)")
    b.add_argument("--size", dest="sizes", action="append", type=parse_size, default=None,
                   help="resolution HxW (repeatable, 'native' keeps each pair's size; default: 240x320)")
    b.add_argument("--middlebury", default=None, help="a Middlebury-format flow folder (frame10/11.png + flow10.flo)")
    b.add_argument("--synth-pairs", type=int, default=8, help="pairs from the built-in benchmark (0: none; default 8)")
    b.add_argument("--no-stereo", action="store_true", help="skip scikit-image's stereo_motorcycle pair")
    b.add_argument("--batch", type=int, default=None, help="also time TVNet methods batched N pairs at a time")
    b.add_argument("--weights", default=None, help="trained TVNet weights for the tvnet methods")
    b.add_argument("--compile", action="store_true", help="TVNet methods: fuse iterations with torch.compile")
    b.add_argument("--seed", type=int, default=0, help="seed of the built-in benchmark's pairs")
    b.add_argument("--out", default=None, help="also write the JSON result to this file")
    shared(b)
    b.set_defaults(func=cmd_flowbench)
