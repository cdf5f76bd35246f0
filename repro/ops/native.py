"""Native kernels compiled on first use: plain C, the system C compiler, loaded with :mod:`ctypes`.

A kernel is a C source string; :func:`load_function` compiles it with ``$CC`` (else ``gcc``,
``cc`` or ``clang``; ``-O3 -march=native``) into :func:`repro.layout.native_build_dir`, under a
name that hashes the source, the flags, the compiler and the CPU (``-march=native`` code must not
be reused on another CPU sharing the cache folder), once per machine: no Python or torch headers,
about a second to build.  Without a compiler, on a failed build, or with the kernel's environment
switch set to ``0`` (:func:`disabled`), it says why and the caller keeps its PyTorch path.
Foreign calls through :mod:`ctypes` release the GIL, so a kernel can be split over Python threads.
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
from pathlib import Path
from typing import Any

from repro.fileio import atomic_write, lock_beside
from repro.layout import native_build_dir

__all__ = ["FLAGS", "compiler", "disabled", "load_function"]

FLAGS = ("-O3", "-march=native", "-fno-math-errno", "-fno-trapping-math", "-shared", "-fPIC", "-x", "c")


def compiler() -> str | None:
    """The C compiler to build with: ``$CC``, else ``gcc``, ``cc`` or ``clang`` (None: none found)."""
    for name in (os.environ.get("CC"), "gcc", "cc", "clang"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


def _cpu_signature() -> str:
    # -march=native code must not be reused on another CPU (a shared cache folder)
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        return "|".join(sorted({ln for ln in lines if ln.startswith(("model name", "flags"))}))
    except OSError:
        return platform.processor() or platform.machine()


def disabled(switch: str) -> str | None:
    """Why a kernel is off by its environment switch (``switch=0``), else None."""
    return f"disabled by {switch}=0" if os.environ.get(switch, "1") == "0" else None


def load_function(name: str, source: str, function: str, argtypes: list) -> tuple[Any, str | None]:
    """``(C function, None)`` -- ``function`` of the library built from ``source`` (built if
    needed), returning ``int``, with ``argtypes`` -- or ``(None, why not)``.  Callers cache it."""
    cc = compiler()
    if cc is None:
        return None, "no C compiler found (set $CC or install gcc)"
    lib, why = _build(name, source, cc)
    if lib is None:
        return None, why
    fn = getattr(lib, function)
    fn.restype = ctypes.c_int
    fn.argtypes = argtypes
    return fn, None


def _build(name: str, source: str, cc: str) -> tuple[ctypes.CDLL | None, str | None]:
    key = hashlib.sha256("\n".join((source, " ".join(FLAGS), cc, _cpu_signature())).encode()).hexdigest()[:16]
    path = native_build_dir() / f"{name}_{key}.so"
    try:
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            with lock_beside(path):
                if not path.exists():
                    c_file = path.with_suffix(".c")
                    with atomic_write(c_file) as tmp:
                        tmp.write_text(source)
                    with atomic_write(path) as tmp:
                        subprocess.run([cc, *FLAGS, str(c_file), "-o", str(tmp), "-lm"], check=True,
                                       capture_output=True, text=True, timeout=120)
        return ctypes.CDLL(str(path)), None
    except (OSError, subprocess.SubprocessError) as err:
        detail = getattr(err, "stderr", None) or str(err)
        return None, f"building {path.name} failed: {detail.strip().splitlines()[-1] if detail.strip() else err}"
