"""Guarded FFTs: every torch FFT of the core runs through a cached known-answer check.

Why: torch 2.14.1's CPU inverse FFT was seen returning wrong values for a complex64
2048 x 2048 array with 2 threads (``ifft2(fft2(x))`` off by ~4 instead of ~1e-6, also at
shape (1, 2048, 2048); correct with 1 thread, at batch 2, at 4096 x 4096 and in complex128).
A wrong FFT silently destroys the sensor function's output, so the maths is checked where
the library can be wrong, not trusted.

How: before the first transform of a given *plan key* (transform rank, full input shape
with batch dims, dtype, device, CPU thread count), a seeded random array of exactly that
shape is transformed forward and back and three known answers are checked: the round trip
returns the input, Parseval's identity holds, and two spectral bins equal their direct
(float64) sums. The first strategy that passes is cached for the key and used from then on:

1. ``native``: torch on the input's device and dtype;
2. ``single_thread``: torch with one intra-op thread (CPU only);
3. ``complex128``: torch in double precision, cast back;
4. ``numpy``: ``scipy.fft`` on the CPU (pocketfft), copied back to the device.

If none passes, :class:`FFTCheckError` is raised. A fallback is logged once per key as a
warning. The check costs about three transforms of the shape, once per key per process
(``python -m benchmarks.bench_sensor`` prints it). :func:`check_parseval` adds a cheap
run-time check on every call of the sensor function. The ``single_thread`` strategy sets
torch's intra-op thread count for the call (under a lock) and restores it.

Scope: every torch FFT of the package goes through here (sensor function, image formation,
window broadening, hence clutter, overlay and bank previews). NumPy's FFT (pocketfft, used by
the simulator's scattering grid and the PSF measurement) is the reference implementation the
``numpy`` strategy falls back to, and is not wrapped.
"""

from __future__ import annotations

import logging
import math
import threading
from collections import OrderedDict
from collections.abc import Callable

import numpy as np
import scipy.fft
import torch

from sar_atd.errors import SarAtdError

LOG = logging.getLogger(__name__)

__all__ = ["FFTCheckError", "fft", "fft2", "ifft2", "plan_for", "clear_plans",
           "check_parseval", "STRATEGIES"]

STRATEGIES = ("native", "single_thread", "complex128", "numpy")
"""Strategies tried in order by the known-answer check."""

_MAX_PLANS = 512
_PLANS: OrderedDict[tuple, str] = OrderedDict()
_LOCK = threading.Lock()
_THREAD_LOCK = threading.Lock()


class FFTCheckError(SarAtdError, RuntimeError):
    """No FFT implementation passed the known-answer check for a shape/dtype/device."""


# --------------------------------------------------------------------------- strategies
def _torch_op(rank: int, inverse: bool) -> Callable[[torch.Tensor], torch.Tensor]:
    if rank == 1:
        return torch.fft.ifft if inverse else torch.fft.fft
    return torch.fft.ifft2 if inverse else torch.fft.fft2


def _run(strategy: str, x: torch.Tensor, rank: int, inverse: bool) -> torch.Tensor:
    """Transform the last ``rank`` dims of complex ``x`` with ``strategy``; same dtype out."""
    if strategy == "native":
        return _torch_op(rank, inverse)(x)
    if strategy == "single_thread":
        with _THREAD_LOCK:
            n = torch.get_num_threads()
            torch.set_num_threads(1)
            try:
                return _torch_op(rank, inverse)(x)
            finally:
                torch.set_num_threads(n)
    if strategy == "complex128":
        return _torch_op(rank, inverse)(x.to(torch.complex128)).to(x.dtype)
    if strategy == "numpy":
        a = x.detach().cpu().numpy()
        axes = tuple(range(-rank, 0))
        out = scipy.fft.ifftn(a, axes=axes) if inverse else scipy.fft.fftn(a, axes=axes)
        return torch.from_numpy(np.ascontiguousarray(out)).to(device=x.device, dtype=x.dtype)
    raise ValueError(f"unknown FFT strategy {strategy!r}")


# --------------------------------------------------------------------------- known answers
def _direct_bin(x: torch.Tensor, rank: int, k: tuple[int, ...]) -> torch.Tensor:
    """Forward DFT of ``x`` (batch flattened, float64) at one bin ``k``, by direct sums."""
    xd = x.to(torch.complex128)
    out = xd
    for axis in range(rank):
        n = x.shape[-rank + axis]
        e = torch.exp(-2j * math.pi * k[axis] * torch.arange(n, device=x.device,
                                                             dtype=torch.float64) / n)
        # contract the leading transform axis (always at position -(rank - axis))
        out = torch.tensordot(out, e, dims=([out.ndim - (rank - axis)], [0]))
    return out.reshape(-1)


def _check(strategy: str, shape: tuple[int, ...], dtype: torch.dtype, device: torch.device,
           rank: int) -> str | None:
    """Run the known-answer check; return None when it passes, else what failed."""
    g = torch.Generator().manual_seed(0x5A7)
    real = torch.float64 if dtype == torch.complex128 else torch.float32
    x = torch.complex(torch.randn(shape, generator=g, dtype=real),
                      torch.randn(shape, generator=g, dtype=real)).to(device)
    tol = 1e-9 if dtype == torch.complex128 else 2e-4
    try:
        spec = _run(strategy, x, rank, inverse=False)
        back = _run(strategy, spec, rank, inverse=True)
    except Exception as err:  # an implementation that raises is just not usable here
        return f"{type(err).__name__}: {err}"
    if spec.shape != x.shape or back.shape != x.shape:
        return f"wrong output shape {tuple(spec.shape)}"
    n = math.prod(shape[-rank:])
    power = float(x.abs().square().sum())
    scale = math.sqrt(power / max(1, math.prod(shape[:-rank])))  # typical bin magnitude
    err_rt = float((back - x).abs().max())
    if not err_rt <= tol * 10:  # elements are O(1): an absolute bound
        return f"round trip off by {err_rt:.3g}"
    err_p = abs(float(spec.abs().square().sum()) / n - power) / power
    if not err_p <= tol:
        return f"Parseval identity off by {err_p:.3g} (relative)"
    dims = shape[-rank:]
    bins: list[tuple[int, ...]] = [(0,) * rank,
                                   tuple(min(d - 1, 3 + 2 * i) for i, d in enumerate(dims))]
    for k in bins:
        want = _direct_bin(x, rank, k)
        flat = 0
        for ki, d in zip(k, dims):
            flat = flat * d + ki
        got = spec.flatten(start_dim=spec.ndim - rank)[..., flat].reshape(-1)
        got = got.to(torch.complex128)
        err_b = float((got - want).abs().max()) / scale
        if not err_b <= tol * 10:
            return f"bin {k} off by {err_b:.3g} (relative)"
    return None


def plan_for(shape: tuple[int, ...], dtype: torch.dtype, device: torch.device | str,
             rank: int = 2) -> str:
    """The checked strategy for transforms of ``rank`` trailing dims of this input.

    Raises:
        FFTCheckError: no strategy passes the known-answer check.
    """
    device = torch.device(device)
    threads = torch.get_num_threads() if device.type == "cpu" else 0
    key = (rank, tuple(int(s) for s in shape), dtype, str(device), threads)
    with _LOCK:
        if key in _PLANS:
            _PLANS.move_to_end(key)
            return _PLANS[key]
    failures = []
    for strategy in STRATEGIES:
        if strategy == "single_thread" and (device.type != "cpu" or threads == 1):
            continue
        if strategy == "complex128" and dtype == torch.complex128:
            continue
        problem = _check(strategy, key[1], dtype, device, rank)
        if problem is None:
            break
        failures.append(f"{strategy}: {problem}")
    else:
        raise FFTCheckError(f"no FFT passes the known-answer check for {dtype} "
                            f"{key[1]} on {device} ({threads} threads): "
                            + "; ".join(failures))
    if failures:
        LOG.warning("torch FFT gives wrong values for %s %s on %s with %d threads (%s); "
                    "using the %s strategy", dtype, key[1], device, threads,
                    "; ".join(failures), strategy)
    with _LOCK:
        _PLANS[key] = strategy
        while len(_PLANS) > _MAX_PLANS:
            _PLANS.popitem(last=False)
    return strategy


def clear_plans() -> None:
    """Forget every cached plan (the next transform of each key is checked again)."""
    with _LOCK:
        _PLANS.clear()


# --------------------------------------------------------------------------- transforms
def _complex(x: torch.Tensor) -> torch.Tensor:
    if x.is_complex():
        return x
    return x.to(torch.complex128 if x.dtype == torch.float64 else torch.complex64)


def _guarded(x: torch.Tensor, rank: int, inverse: bool) -> torch.Tensor:
    if x.ndim < rank:
        raise ValueError(f"need at least {rank} dims to transform, got shape {tuple(x.shape)}")
    x = _complex(x)
    strategy = plan_for(tuple(x.shape), x.dtype, x.device, rank)
    return _run(strategy, x, rank, inverse)


def fft2(x: torch.Tensor) -> torch.Tensor:
    """Checked ``torch.fft.fft2`` over the last two dims (complex out, dtype kept)."""
    return _guarded(x, 2, inverse=False)


def ifft2(x: torch.Tensor) -> torch.Tensor:
    """Checked ``torch.fft.ifft2`` over the last two dims (complex out, dtype kept)."""
    return _guarded(x, 2, inverse=True)


def fft(x: torch.Tensor, n: int | None = None) -> torch.Tensor:
    """Checked ``torch.fft.fft`` over the last dim, zero-padded or cut to ``n``."""
    if n is not None and n != x.shape[-1]:
        if n < x.shape[-1]:
            x = x[..., :n]
        else:
            x = torch.nn.functional.pad(x, (0, n - x.shape[-1]))
    return _guarded(x, 1, inverse=False)


def check_parseval(image: torch.Tensor, spectrum: torch.Tensor, what: str = "FFT") -> None:
    """Check that an image and its 2-D spectrum carry the same energy, per image.

    ``sum |image|^2 == sum |spectrum|^2 / (H W)`` holds for any correct DFT pair, so a
    transform that goes wrong at run time (not only in the known-answer check) cannot pass
    silently. Costs two reductions.

    Args:
        image: complex (..., H, W).
        spectrum: complex (..., H, W), ``fft2(image)`` (or ``image = ifft2(spectrum)``).
        what: name used in the error.

    Raises:
        FFTCheckError: non-finite values, or energies differing by more than 0.1 %.
    """
    n = image.shape[-1] * image.shape[-2]
    dims = (-3, -2, -1)
    e_img = torch.linalg.vector_norm(torch.view_as_real(image), dim=dims).double().square()
    e_spec = torch.linalg.vector_norm(torch.view_as_real(spectrum),
                                      dim=dims).double().square() / n
    tol = 1e-3 * torch.maximum(e_img, e_spec) + 1e-20 * n
    bad = ~torch.isfinite(e_img) | ~torch.isfinite(e_spec) | ((e_img - e_spec).abs() > tol)
    if bool(bad.any()):
        i = int(torch.nonzero(bad.reshape(-1)).flatten()[0])
        raise FFTCheckError(
            f"{what} of shape {tuple(image.shape)} gave wrong values (image {i}: energy "
            f"{float(e_img.reshape(-1)[i]):.4g} in the image, "
            f"{float(e_spec.reshape(-1)[i]):.4g} in the spectrum)")
