"""The signature bank: every class x azimuth x depression, chunked, memory-mapped, resumable.

On-disk layout (one folder)::

    manifest.json                 format, version, generator config, completed chunks with
                                  per-file SHA-256 checksums and sizes
    <CHUNK>.sig.npy               float16 (N, 128, 128, 2): real and imaginary parts
    <CHUNK>.shadow.npy            uint8 (N, 128, 16): shadow masks, bit-packed along columns
    <CHUNK>.support.npy           uint8 (N, 128, 16): support masks, bit-packed

A chunk is one class (or object) at one depression, e.g. ``T72_17`` (720 azimuths every
0.5 deg) or ``tree_15`` (21 azimuths). Storage choice: plain ``.npy`` files so every array
is memory-mappable (``np.load(mmap_mode='r')``); the "compression" that keeps memory mapping
is float16 signatures (half the bytes of complex64; relative error <= 2^-11, about -66 dB,
far below the 8-bit LUT's resolution and the -35 dB sidelobes) and bit-packed masks (8x).
Zip/deflate compression would defeat memory mapping and was not used.

Resumable: a chunk's files are written to hidden temporaries, renamed, then entered in the
manifest (also written atomically, :mod:`sar_atd.atomic`); on restart stale temporaries of a
killed writer are removed, completed chunks are verified by checksum and skipped, anything
else is regenerated. Parallel over processes (``--workers``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sar_atd.atomic import (
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_with,
    clean_stale_temporaries,
)
from sar_atd.sar.chips import MSTAR_CLASSES
from sar_atd_training.errors import BankError

LOG = logging.getLogger(__name__)

BANK_FORMAT = "sar-atd-signature-bank"
BANK_VERSION = 1
SIMULATOR_VERSION = "0.1.0"
MANIFEST = "manifest.json"
FILE_KINDS = ("signature", "shadow", "support")
_SUFFIX = {"signature": ".sig.npy", "shadow": ".shadow.npy", "support": ".support.npy"}


@dataclass(frozen=True)
class SignatureRecord:
    """Metadata of one bank entry."""

    kind: str  # 'target' or the OOD object's name ('tree', 'house', 'container', ...)
    class_name: str
    azimuth_deg: float
    depression_deg: float


AZIMUTH_STEP_RANGE_DEG = (0.1, 180.0)
"""Accepted target azimuth step (deg): 0.1 deg gives 3,600 azimuths per class and depression."""
DEPRESSION_RANGE_DEG = (5.0, 75.0)
"""Accepted depressions (deg): MSTAR holds 15-17, 30 and 45; the ray-cast shadows of the
simulator grow as 1/tan(depression) and leave the 128-pixel chip below about 5 deg."""


@dataclass(frozen=True)
class BankConfig:
    """What a bank holds and how it was generated (stored in the manifest).

    Attributes:
        classes: target classes (MSTAR folder names).
        azimuth_step_deg: target azimuth step (deg), azimuths ``0, step, ..., < 360``.
        depressions_deg: target depressions (deg).
        objects: out-of-distribution objects (``models.OBJECT_NAMES``); the default keeps the
            two of banks written before the man-made clutter kinds existed.
        object_azimuths_deg: (start, stop, step) of object azimuths, stop included.
        object_depression_deg: object depression (deg).
        seed: base seed; each entry's seed derives from it and the entry's indices.
        shape: chip (H, W).
        edge_model: edge diffraction model (``scattering.EDGE_MODELS``); the default
            ``isotropic`` is left out of the manifest, so banks written before the option
            existed still resume.
    """

    classes: tuple[str, ...] = tuple(MSTAR_CLASSES)
    azimuth_step_deg: float = 0.5
    depressions_deg: tuple[float, ...] = (15.0, 16.0, 17.0)
    objects: tuple[str, ...] = ("tree", "house")
    object_azimuths_deg: tuple[float, float, float] = (0.0, 100.0, 5.0)
    object_depression_deg: float = 15.0
    seed: int = 0
    shape: tuple[int, int] = (128, 128)
    edge_model: str = "isotropic"

    def __post_init__(self) -> None:
        from sar_atd_training.simulator.scattering import check_edge_model

        check_edge_model(self.edge_model)
        for c in self.classes:
            if c not in MSTAR_CLASSES:
                raise ValueError(f"unknown class {c!r}: expected some of {MSTAR_CLASSES}")
        from sar_atd_training.simulator.models import OBJECT_NAMES

        for o in self.objects:
            if o not in OBJECT_NAMES:
                raise ValueError(f"unknown object {o!r}: expected some of "
                                 f"{', '.join(OBJECT_NAMES)}")
        lo, hi = AZIMUTH_STEP_RANGE_DEG
        if not lo <= self.azimuth_step_deg <= hi:
            raise ValueError(f"azimuth step must be in [{lo}, {hi}] degrees, "
                             f"got {self.azimuth_step_deg}")
        lo, hi = DEPRESSION_RANGE_DEG
        for d in tuple(self.depressions_deg) + (self.object_depression_deg,):
            if not lo <= d <= hi:
                raise ValueError(f"depression must be in [{lo}, {hi}] degrees, got {d}")
        if not self.classes and not self.objects:
            raise ValueError("nothing to simulate: no classes and no objects")
        if not self.depressions_deg and self.classes:
            raise ValueError("no target depressions given")
        for name, values in (("class", self.classes), ("depression", self.depressions_deg),
                             ("object", self.objects)):
            dup = sorted({v for v in values if list(values).count(v) > 1}, key=str)
            if dup:
                raise ValueError(f"duplicate {name}(s) {dup}: each may be given once")

    def chunks(self) -> list[dict[str, Any]]:
        """Planned chunks in bank order: name, kind, class, depression, azimuths."""
        out = []
        n_az = int(round(360.0 / self.azimuth_step_deg))
        az = [round(i * self.azimuth_step_deg, 6) for i in range(n_az)
              if i * self.azimuth_step_deg < 360.0 - 1e-9]
        for c in self.classes:
            for d in self.depressions_deg:
                out.append({"name": f"{c}_{d:g}", "kind": "target", "class_name": c,
                            "depression_deg": float(d), "azimuths_deg": az})
        a0, a1, st = self.object_azimuths_deg
        oaz = [round(a0 + i * st, 6) for i in range(int(math.floor((a1 - a0) / st + 1e-9)) + 1)]
        for o in self.objects:
            out.append({"name": f"{o}_{self.object_depression_deg:g}", "kind": o,
                        "class_name": o, "depression_deg": float(self.object_depression_deg),
                        "azimuths_deg": oaz})
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> BankConfig:
        """The config recorded in a manifest (:meth:`to_json`'s output).

        Raises:
            BankError: keys this version does not know or invalid values.
        """
        names = {f.name for f in dataclasses.fields(cls)}
        bad = sorted(set(data) - names)
        if bad:
            raise BankError(f"bank manifest config has unknown keys {bad}")
        try:
            return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})
        except (TypeError, ValueError) as err:
            raise BankError(f"bank manifest config is invalid: {err}") from None

    def to_json(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        if d["edge_model"] == "isotropic":
            del d["edge_model"]
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in d.items()}


def entry_seed(base_seed: int, class_name: str, depression_deg: float, azimuth_deg: float
               ) -> int:
    """Deterministic per-entry seed, independent of worker count and chunking."""
    key = [base_seed, int.from_bytes(hashlib.sha256(class_name.encode()).digest()[:4], "little"),
           int(round(depression_deg * 1000)), int(round(azimuth_deg * 1000))]
    return int(np.random.SeedSequence(key).generate_state(1)[0])


def generator_info() -> dict[str, Any]:
    """Simulator constants recorded in the manifest (a change means a different bank)."""
    from sar_atd_training.simulator import geometry, scattering
    from sar_atd_training.simulator.models import MATERIALS

    return {"simulator_version": SIMULATOR_VERSION,
            "amplitude_gain": scattering.AMPLITUDE_GAIN,
            "ground_reflectivity": scattering.GROUND_REFLECTIVITY,
            "dihedral_efficiency": scattering.DIHEDRAL_EFFICIENCY,
            "trihedral_efficiency": scattering.TRIHEDRAL_EFFICIENCY,
            "facet_spacing_m": geometry.FACET_SPACING_M,
            "materials": {k: dataclasses.asdict(v) for k, v in MATERIALS.items()}}


# --------------------------------------------------------------------------- helpers
def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def pack_masks(masks: np.ndarray) -> np.ndarray:
    """bool (N, H, W) -> uint8 (N, H, ceil(W/8)) bit-packed along columns."""
    return np.packbits(np.asarray(masks, bool), axis=-1)


def encode_signatures(sig: np.ndarray) -> np.ndarray:
    """complex (N, H, W) -> float16 (N, H, W, 2)."""
    s = np.asarray(sig)
    return np.stack([s.real, s.imag], axis=-1).astype(np.float16)


def _simulate_task(task: tuple[str, float, list[float], int, tuple[int, int], str]
                   ) -> tuple[str, list[float], np.ndarray, np.ndarray, np.ndarray]:
    """Worker: simulate azimuths of one chunk -> (chunk class key, azimuths, arrays)."""
    from sar_atd_training.simulator import simulate_signature

    class_name, dep, azimuths, base_seed, shape, edge_model = task
    n = len(azimuths)
    sig = np.zeros((n, *shape), np.complex64)
    sh = np.zeros((n, *shape), bool)
    su = np.zeros((n, *shape), bool)
    for i, az in enumerate(azimuths):
        sig[i], sh[i], su[i] = simulate_signature(class_name, az, dep,
                                                  entry_seed(base_seed, class_name, dep, az),
                                                  edge_model=edge_model)
    return class_name, azimuths, encode_signatures(sig), pack_masks(sh), pack_masks(su)


def _init_worker() -> None:
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:  # pragma: no cover
        pass


def _verify_chunk(root: Path, entry: dict[str, Any], full: bool) -> str | None:
    """None if the chunk's files are present and match the manifest, else the problem."""
    for kind in FILE_KINDS:
        info = entry["files"][kind]
        p = root / info["path"]
        if not p.is_file():
            return f"missing file {p}"
        if p.stat().st_size != info["bytes"]:
            return f"{p}: size {p.stat().st_size} != {info['bytes']} in the manifest"
        if full and _sha256(p) != info["sha256"]:
            return f"{p}: SHA-256 checksum mismatch (corrupt file)"
    return None


def _read_manifest(root: Path) -> dict[str, Any]:
    mpath = root / MANIFEST
    if not mpath.is_file():
        raise BankError(f"signature bank manifest not found: {mpath}")
    try:
        man = json.loads(mpath.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise BankError(f"cannot read bank manifest {mpath}: {err}") from None
    if man.get("format") != BANK_FORMAT or man.get("version") != BANK_VERSION:
        raise BankError(f"{mpath}: not a version-{BANK_VERSION} {BANK_FORMAT} manifest "
                        f"(format={man.get('format')!r}, version={man.get('version')!r})")
    return man


# --------------------------------------------------------------------------- writer
def write_bank(out: str | Path, config: BankConfig | None = None, workers: int = 1,
               progress: bool = True, task_size: int = 24) -> Path:
    """Generate (or resume) a bank in ``out``; returns the manifest path.

    Raises:
        BankError: ``out`` holds a bank made with a different config/simulator.
    """
    from tqdm import tqdm

    config = config or BankConfig()
    root = Path(out)
    if root.exists() and not root.is_dir():
        raise BankError(f"bank folder {root} is a file")
    root.mkdir(parents=True, exist_ok=True)
    gen = {"config": config.to_json(), "generator": generator_info()}
    mpath = root / MANIFEST
    for p in [mpath] + [root / (c["name"] + sfx) for c in config.chunks()
                        for sfx in _SUFFIX.values()]:
        clean_stale_temporaries(p)
    done: dict[str, dict[str, Any]] = {}
    if mpath.is_file():
        man = _read_manifest(root)
        if man.get("generation") != json.loads(json.dumps(gen)):
            config = _with_more_objects(root, man.get("generation"), config)
            gen = {"config": config.to_json(), "generator": generator_info()}
        for entry in man.get("chunks", []):
            problem = _verify_chunk(root, entry, full=True)
            if problem:
                LOG.warning("chunk %s will be regenerated: %s", entry["name"], problem)
            else:
                done[entry["name"]] = entry
    plan = config.chunks()
    order = [c["name"] for c in plan]

    def save_manifest() -> None:
        atomic_write_json(mpath, {"format": BANK_FORMAT, "version": BANK_VERSION,
                                   "generation": gen, "shape": list(config.shape),
                                   "storage": {"signature": "float16 (N, H, W, 2) re/im",
                                               "shadow": "uint8 packbits(axis=-1)",
                                               "support": "uint8 packbits(axis=-1)"},
                                   "chunks": [done[n] for n in order if n in done]})

    save_manifest()
    pending = [c for c in plan if c["name"] not in done]
    LOG.info("bank %s: %d chunks done, %d to generate", root, len(done), len(pending))
    if not pending:
        return mpath
    tasks = []
    for c in pending:
        az = c["azimuths_deg"]
        for s in range(0, len(az), task_size):
            tasks.append((c["class_name"], c["depression_deg"], az[s:s + task_size],
                          config.seed, tuple(config.shape), config.edge_model))
    buffers: dict[str, dict[float, tuple[np.ndarray, np.ndarray, np.ndarray]]] = {
        c["name"]: {} for c in pending}
    by_key = {(c["class_name"], c["depression_deg"]): c for c in pending}
    total = sum(len(c["azimuths_deg"]) for c in pending)

    def consume(results: Iterable[Any], bar: Any) -> None:
        for task, (cls, azs, sig, sh, su) in results:
            chunk = by_key[(cls, task[1])]
            buf = buffers[chunk["name"]]
            for i, a in enumerate(azs):
                buf[a] = (sig[i], sh[i], su[i])
            bar.update(len(azs))
            if len(buf) == len(chunk["azimuths_deg"]):
                done[chunk["name"]] = _write_chunk(root, chunk, buf)
                del buffers[chunk["name"]]
                save_manifest()

    with tqdm(total=total, desc="simulate", unit="pair", disable=not progress) as bar:
        if workers <= 1:
            consume(((t, _simulate_task(t)) for t in tasks), bar)
        else:
            import multiprocessing as mp

            ctx = mp.get_context("fork" if hasattr(os, "fork") else "spawn")
            with ctx.Pool(workers, initializer=_init_worker) as pool:
                consume(pool.imap_unordered(_task_with_key, tasks), bar)
    return mpath


def _with_more_objects(root: Path, old_gen: Any, config: BankConfig) -> BankConfig:
    """``config`` with the bank's objects first when the bank in ``root`` differs from it
    only by lacking some of its OOD objects: resuming then adds just those objects' chunks
    (entry seeds do not depend on the other chunks, so they equal a fresh simulation's).

    Raises:
        BankError: any other difference (other settings or simulator version), or the bank
            holds objects ``config`` leaves out.
    """
    differ = BankError(f"{root} holds a bank generated with a different configuration or "
                       "simulator version; write to a new folder (or delete it)")
    if not isinstance(old_gen, dict) or not isinstance(old_gen.get("config"), dict):
        raise differ
    old_objects = list(old_gen["config"].get("objects", []))
    new = json.loads(json.dumps({"config": config.to_json(), "generator": generator_info()}))
    old = json.loads(json.dumps(old_gen))
    old["config"]["objects"] = new["config"]["objects"] = []
    if old != new:
        raise differ
    dropped = [o for o in old_objects if o not in config.objects]
    if dropped:
        raise BankError(f"{root} holds the OOD objects {old_objects}; this run leaves out "
                        f"{dropped}: a bank can only gain objects (pass them too, or write "
                        "to a new folder)")
    added = [o for o in config.objects if o not in old_objects]
    LOG.warning("bank %s: adding the OOD objects %s to its %s", root, added, old_objects)
    return dataclasses.replace(config, objects=tuple(old_objects + added))


def read_bank_config(path: str | Path) -> BankConfig:
    """The :class:`BankConfig` a bank folder was generated with (from its manifest).

    Raises:
        BankError: no readable manifest or an unknown config.
    """
    man = _read_manifest(Path(path))
    gen = man.get("generation")
    if not isinstance(gen, dict) or not isinstance(gen.get("config"), dict):
        raise BankError(f"{Path(path) / MANIFEST}: no generation config")
    return BankConfig.from_json(gen["config"])


def _task_with_key(task: tuple) -> tuple[tuple, Any]:
    return task, _simulate_task(task)


def _write_chunk(root: Path, chunk: dict[str, Any],
                 buf: dict[float, tuple[np.ndarray, np.ndarray, np.ndarray]]) -> dict[str, Any]:
    """Write one chunk's three files (each atomically) and return its manifest entry."""
    az = chunk["azimuths_deg"]
    arrays = {"signature": np.stack([buf[a][0] for a in az]),
              "shadow": np.stack([buf[a][1] for a in az]),
              "support": np.stack([buf[a][2] for a in az])}
    files = {}
    for kind, arr in arrays.items():
        name = chunk["name"] + _SUFFIX[kind]
        final = atomic_write_with(root / name, lambda fh, arr=arr: np.save(fh, arr))
        files[kind] = {"path": name, "sha256": _sha256(final), "bytes": final.stat().st_size}
    entry = dict(chunk)
    entry["count"] = len(az)
    entry["files"] = files
    return entry


# --------------------------------------------------------------------------- reader
@dataclass
class _Chunk:
    sig: np.ndarray  # float16 (N, H, W, 2) or complex64 (N, H, W)
    shadow: np.ndarray  # packed uint8 (N, H, W/8) or bool (N, H, W)
    support: np.ndarray
    packed: bool


@dataclass
class SignatureBank:
    """Signature/shadow/support triples with their records (on disk or in memory)."""

    records: list[SignatureRecord]
    _chunks: list[_Chunk] = field(repr=False)
    shape: tuple[int, int] = (128, 128)
    path: Path | None = None

    def __post_init__(self) -> None:
        sizes = [c.sig.shape[0] for c in self._chunks]
        self._starts = np.cumsum([0] + sizes)
        if self._starts[-1] != len(self.records):
            raise BankError(f"bank has {self._starts[-1]} arrays but {len(self.records)} "
                            "records")

    # ---- construction
    @classmethod
    def open(cls, path: str | Path, verify: str = "full") -> SignatureBank:
        """Open an on-disk bank (memory-mapped) and verify it against its manifest.

        Args:
            path: bank folder (or its manifest.json).
            verify: 'full' (SHA-256 of every file), 'size' (presence and sizes) or 'none'.

        Raises:
            BankError: missing/unreadable manifest, missing or corrupt chunk file, wrong
                array shapes.
        """
        if verify not in ("full", "size", "none"):
            raise ValueError(f"verify must be 'full', 'size' or 'none', got {verify!r}")
        root = Path(path)
        if root.name == MANIFEST:
            root = root.parent
        if not root.is_dir():
            raise BankError(f"signature bank folder not found: {root}")
        man = _read_manifest(root)
        h, w = man["shape"]
        records: list[SignatureRecord] = []
        chunks: list[_Chunk] = []
        if not man.get("chunks"):
            raise BankError(f"{root / MANIFEST}: the bank has no completed chunks")
        for entry in man["chunks"]:
            if verify != "none":
                problem = _verify_chunk(root, entry, full=verify == "full")
                if problem:
                    raise BankError(f"signature bank {root}: chunk {entry['name']}: {problem}; "
                                    "rerun `sar-atd simulate --out` on this folder to "
                                    "regenerate it")
            arrs = []
            for kind in FILE_KINDS:
                p = root / entry["files"][kind]["path"]
                try:
                    arrs.append(np.load(p, mmap_mode="r"))
                except (OSError, ValueError) as err:
                    raise BankError(f"cannot memory-map {p}: {err}") from None
            n = entry["count"]
            wb = (w + 7) // 8
            if (arrs[0].shape != (n, h, w, 2) or arrs[1].shape != (n, h, wb)
                    or arrs[2].shape != (n, h, wb)):
                raise BankError(f"signature bank {root}: chunk {entry['name']} has arrays of "
                                f"shapes {[a.shape for a in arrs]}, expected ({n}, {h}, {w}, 2)"
                                f" and ({n}, {h}, {wb})")
            chunks.append(_Chunk(arrs[0], arrs[1], arrs[2], True))
            records += [SignatureRecord(entry["kind"], entry["class_name"], float(a),
                                        float(entry["depression_deg"]))
                        for a in entry["azimuths_deg"]]
        bank = cls(records, chunks, (h, w), root)
        return bank

    @classmethod
    def from_arrays(cls, signatures: np.ndarray, shadows: np.ndarray, supports: np.ndarray,
                    records: Sequence[SignatureRecord]) -> SignatureBank:
        """An in-memory bank: complex (N, H, W), bool (N, H, W) x2 and N records."""
        sig = np.asarray(signatures)
        sh = np.asarray(shadows, bool)
        su = np.asarray(supports, bool)
        if sig.ndim != 3 or sh.shape != sig.shape or su.shape != sig.shape:
            raise ValueError(f"signatures, shadows and supports must share shape (N, H, W); got "
                             f"{sig.shape}, {sh.shape}, {su.shape}")
        if len(records) != sig.shape[0]:
            raise ValueError(f"{len(records)} records for {sig.shape[0]} signatures")
        return cls(list(records), [_Chunk(sig.astype(np.complex64), sh, su, False)],
                   (int(sig.shape[1]), int(sig.shape[2])))

    # ---- pickling (DataLoader workers): reopen the memory maps, don't copy them
    def __getstate__(self) -> dict[str, Any]:
        if self.path is not None:
            return {"path": str(self.path)}
        return self.__dict__.copy()

    def __setstate__(self, state: dict[str, Any]) -> None:
        if "path" in state and len(state) == 1:
            other = SignatureBank.open(state["path"], verify="none")
            self.__dict__.update(other.__dict__)
        else:
            self.__dict__.update(state)

    # ---- access
    def __len__(self) -> int:
        return len(self.records)

    def _locate(self, i: int) -> tuple[_Chunk, int]:
        if not -len(self) <= i < len(self):
            raise IndexError(f"bank index {i} out of range [0, {len(self)})")
        i = int(i) % len(self)
        c = int(np.searchsorted(self._starts, i, side="right")) - 1
        return self._chunks[c], i - int(self._starts[c])

    def signature(self, i: int) -> np.ndarray:
        """complex64 (H, W) ideal target-only signature of entry ``i``."""
        ch, j = self._locate(i)
        if ch.packed:
            s = np.asarray(ch.sig[j], dtype=np.float32)
            return (s[..., 0] + 1j * s[..., 1]).astype(np.complex64)
        return np.array(ch.sig[j], dtype=np.complex64)

    def _mask(self, arr: np.ndarray, packed: bool, j: int) -> np.ndarray:
        if packed:
            return np.unpackbits(np.asarray(arr[j]), axis=-1, count=self.shape[1]).astype(bool)
        return np.array(arr[j], dtype=bool)

    def shadow(self, i: int) -> np.ndarray:
        """bool (H, W): ground in the target's shadow."""
        ch, j = self._locate(i)
        return self._mask(ch.shadow, ch.packed, j)

    def support(self, i: int) -> np.ndarray:
        """bool (H, W): pixels covered by the visible, laid-over target."""
        ch, j = self._locate(i)
        return self._mask(ch.support, ch.packed, j)

    def select(self, kind: str | None = None, classes: Iterable[str] | None = None,
               depressions: Iterable[float] | None = None) -> np.ndarray:
        """int64 indices of the records matching every given filter (depressions within
        1e-6 deg)."""
        cl = None if classes is None else set(classes)
        dp = None if depressions is None else [float(d) for d in depressions]
        idx = [i for i, r in enumerate(self.records)
               if (kind is None or r.kind == kind) and (cl is None or r.class_name in cl)
               and (dp is None or any(abs(r.depression_deg - d) < 1e-6 for d in dp))]
        return np.array(idx, dtype=np.int64)


# --------------------------------------------------------------------------- preview
def write_preview(bank: SignatureBank, png: str | Path, classes: Sequence[str] | None = None,
                  azimuths: Sequence[float] = (0.0, 45.0, 90.0, 135.0),
                  depression_deg: float | None = None) -> Path:
    """PNG sheet: per (class, azimuth) the LUT-rendered signature (after the sensor function)
    and its shadow mask side by side (support outlined in grey)."""
    import cv2

    from sar_atd.sar.lut import quarter_power_lut
    from sar_atd.sar.sensor import apply_sensor_function

    names = list(classes) if classes else list(dict.fromkeys(r.class_name for r in bank.records))
    rows = []
    for name in names:
        idx = bank.select(classes=[name])
        if idx.size == 0:
            continue
        deps = sorted({bank.records[i].depression_deg for i in idx})
        dep = depression_deg if depression_deg in deps else deps[-1]
        tiles = []
        for az in azimuths:
            cand = [i for i in idx if bank.records[i].depression_deg == dep]
            j = min(cand, key=lambda i: abs((bank.records[i].azimuth_deg - az + 180) % 360 - 180))
            img = quarter_power_lut(apply_sensor_function(bank.signature(j)), ref=2.0)
            sh = np.where(bank.shadow(j), 255, 0).astype(np.uint8)
            sh[bank.support(j) & ~bank.shadow(j)] = 110
            pair = np.concatenate([img, np.full((img.shape[0], 2), 128, np.uint8), sh], axis=1)
            pair = cv2.copyMakeBorder(pair, 14, 2, 2, 2, cv2.BORDER_CONSTANT, value=64)
            cv2.putText(pair, f"{name} az{bank.records[j].azimuth_deg:g} dep{dep:g}", (2, 11),
                        cv2.FONT_HERSHEY_SIMPLEX, 0.35, 255, 1, cv2.LINE_AA)
            tiles.append(pair)
        rows.append(np.concatenate(tiles, axis=1))
    if not rows:
        raise BankError(f"nothing to preview: none of {names} is in the bank")
    sheet = np.concatenate(rows, axis=0)
    png = Path(png)
    png.parent.mkdir(parents=True, exist_ok=True)
    ok, buf = cv2.imencode(".png", sheet)
    if not ok:
        raise BankError(f"cannot encode preview {png}")
    atomic_write_bytes(png, buf.tobytes())
    return png
