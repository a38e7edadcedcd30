"""Typed configuration: dataclasses loaded from YAML with strict key and type checks.

Every recipe and node parameter file maps onto a dataclass. Unknown keys are errors (a typo
must never silently fall back to a default), nested dataclasses and tuples are converted.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from sar_atd.errors import ConfigError

T = TypeVar("T")


def _convert(tp: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(arg, value, where)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(f"{where}: {value!r} matches none of {tp}: {'; '.join(errors)}")
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping for {tp.__name__}, got {value!r}")
        return from_dict(tp, value, where)
    if origin in (tuple,):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(args[0], v, f"{where}[{i}]") for i, v in enumerate(value))
        if args and len(args) != len(value):
            raise ConfigError(f"{where}: expected {len(args)} values, got {len(value)}")
        return tuple(_convert(a, v, f"{where}[{i}]") for i, (a, v) in enumerate(zip(args, value)))
    if origin in (list,):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        return [_convert(args[0], v, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin in (dict,):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return {k: _convert(args[1], v, f"{where}.{k}") for k, v in value.items()}
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"{where}: {value!r} is not one of {list(args)}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true/false, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    if tp is Path:
        if not isinstance(value, (str, Path)):
            raise ConfigError(f"{where}: expected a path, got {value!r}")
        return Path(value)
    return value


def from_dict(cls: type[T], data: dict[str, Any], where: str | None = None) -> T:
    """Build dataclass ``cls`` from a mapping, rejecting unknown keys and wrong types.

    Raises:
        ConfigError: on an unknown key, a missing required key or a value of the wrong type.
    """
    where = where or cls.__name__
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls!r} is not a dataclass")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; known keys: {sorted(fields)}")
    kwargs = {k: _convert(hints[k], v, f"{where}.{k}") for k, v in data.items()}
    try:
        obj = cls(**kwargs)
    except TypeError as err:
        raise ConfigError(f"{where}: {err}") from None
    except ValueError as err:
        raise ConfigError(f"{where}: {err}") from None
    return obj


def to_dict(obj: Any) -> dict[str, Any]:
    """Plain-YAML-safe dict of a dataclass (tuples become lists, paths strings)."""

    def clean(v: Any) -> Any:
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [clean(x) for x in v]
        if isinstance(v, Path):
            return str(v)
        return v

    return clean(dataclasses.asdict(obj))


def check_range(name: str, value: tuple[float, float], lo: float | None = None) -> None:
    """Refuse a ``(min, max)`` range that is not two ordered numbers, or is below ``lo``.

    Raises:
        ConfigError: naming ``name`` and the offending values.
    """
    if len(value) != 2:
        raise ConfigError(f"{name} must be (min, max), got {value}")
    if not value[0] <= value[1]:  # also refuses NaN
        raise ConfigError(f"{name}: min {value[0]} > max {value[1]}")
    if lo is not None and value[0] < lo:
        raise ConfigError(f"{name}: values must be >= {lo}, got {value}")


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping, naming the file in any error."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as err:
        raise ConfigError(f"cannot read config {path}: {err.strerror or err}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(f"invalid YAML in {path}: {err}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping, got {type(data).__name__}")
    return data


def load_config(cls: type[T], path: str | Path, section: str | None = None) -> T:
    """Load dataclass ``cls`` from a YAML file (optionally one top-level ``section``)."""
    data = load_yaml(path)
    if section is not None:
        if section not in data:
            raise ConfigError(f"{path}: missing section '{section}'")
        data = data[section] or {}
    return from_dict(cls, data, where=f"{path}" + (f":{section}" if section else ""))


# --------------------------------------------------------------------------------------
# Runtime configuration shared by the offline tools and the ROS 2 nodes.
#
# A ROS 2 parameter file holds one block per node::
#
#     detector_node:
#       ros__parameters:
#         tiler: {tile_size: 640, overlap: 128, batch_size: 8, device: auto}
#         detector: {model: models/default.pt, backend: "", device: auto}
#         scene: {merge: nms, match: ios, match_threshold: 0.5}
#         evaluator: {iou_thresholds: [0.25, 0.5, 0.7]}
#
# ROS parameters cannot be null, so "unset" is spelled 0.0 / "" / "auto" below.
# --------------------------------------------------------------------------------------

ROS_STANDARD_PARAMETERS = frozenset({"use_sim_time", "qos_overrides",
                                     "start_type_description_service"})
"""Parameters every rclpy node may carry; ignored when building a runtime config."""


def load_ros_params(path: str | Path, node_name: str) -> dict[str, Any]:
    """The ``ros__parameters`` mapping of ``node_name`` in a ROS 2 parameter file.

    Accepts ``node_name`` with or without a leading ``/``, blocks keyed by the node in any
    namespace (``/sar/node``, ``/**/node``) and the ``/**`` wildcard block (whose parameters
    apply to every node); more specific blocks override: ``/**``, then ``/**/node``-style
    wildcards, then the node's own keys.

    Raises:
        ConfigError: unreadable file, invalid YAML, or no block for ``node_name``.
    """
    data = load_yaml(path)
    name = node_name.strip("/")

    def rank(key: str) -> int:
        return 0 if key == "/**" else 1 if "*" in key else 2

    keys = [k for k in data if isinstance(k, str) and (
        k == "/**" or k.strip("/") == name or k.rstrip("/").split("/")[-1] == name)]
    merged: dict[str, Any] = {}
    found = False
    for key in sorted(keys, key=rank):
        block = data.get(key)
        if block is None:
            continue
        if not isinstance(block, dict) or not isinstance(block.get("ros__parameters", {}),
                                                          dict):
            raise ConfigError(f"{path}: block '{key}' must hold a 'ros__parameters' mapping")
        if "ros__parameters" not in block:
            raise ConfigError(f"{path}: block '{key}' has no 'ros__parameters'")
        merged = _deep_merge(merged, block["ros__parameters"] or {})
        found = found or key != "/**"
    if not found and "/**" not in data:
        raise ConfigError(f"{path}: no parameters for node '{name}' (blocks: {sorted(data)})")
    return merged


def _deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = _deep_merge(out[k], v) if isinstance(v, dict) and isinstance(
            out.get(k), dict) else v
    return out


def unflatten_params(params: dict[str, Any]) -> dict[str, Any]:
    """``{"tiler.tile_size": 640}`` (rclpy's dotted names) -> ``{"tiler": {"tile_size": 640}}``.

    Nested mappings pass through unchanged, so both spellings are accepted.
    """
    out: dict[str, Any] = {}
    for key, value in params.items():
        parts = str(key).split(".")
        node = out
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"parameter {key!r} conflicts with a scalar '{p}'")
        if isinstance(value, dict) and isinstance(node.get(parts[-1]), dict):
            node[parts[-1]] = _deep_merge(node[parts[-1]], value)
        else:
            node[parts[-1]] = value
    return out


class RosParamsMixin:
    """``from_ros_params`` / ``from_params`` for runtime dataclasses with a ``SECTION``."""

    SECTION: typing.ClassVar[str] = ""

    @classmethod
    def from_params(cls: type[T], params: dict[str, Any], section: str | None = None,
                    where: str = "parameters") -> T:
        """Build from node parameters (nested or dotted names); only ``section`` is read.

        Raises:
            ConfigError: unknown key or wrong type inside the section.
        """
        sec = cls.SECTION if section is None else section  # type: ignore[attr-defined]
        data = unflatten_params({k: v for k, v in params.items()
                                 if k.split(".")[0] not in ROS_STANDARD_PARAMETERS})
        if sec:
            data = data.get(sec) or {}
            if not isinstance(data, dict):
                raise ConfigError(f"{where}: '{sec}' must be a mapping, got {data!r}")
        return from_dict(cls, data, where=f"{where}:{sec}" if sec else where)

    @classmethod
    def from_ros_params(cls: type[T], path: str | Path, node_name: str,
                        section: str | None = None) -> T:
        """Build from the ``node_name: ros__parameters:`` block of a ROS 2 parameter file."""
        params = load_ros_params(path, node_name)
        return cls.from_params(params, section, where=f"{path}:{node_name}")  # type: ignore


DEVICES_HELP = "'auto' (CUDA when present, else CPU), 'cpu', 'cuda' or 'cuda:N'"


def _check_device(device: str, where: str) -> None:
    if device not in ("auto", "cpu", "cuda") and not (
            device.startswith("cuda:") and device[5:].isdigit()):
        raise ValueError(f"{where}.device must be {DEVICES_HELP}, got {device!r}")


@dataclasses.dataclass
class TilerConfig(RosParamsMixin):
    """How :class:`sar_atd.tiling.Tiler` turns a scene into batches of 8-bit tiles.

    Rendering rule (applied once per scene, before tiling):

    * uint8 input is already an 8-bit rendering and passes through untouched;
    * complex input: amplitude ``|s|``; float input: amplitude ``|x|``; uint16 (mono16)
      input: amplitude ``counts / 65535 * mono16_full_scale``;
    * the amplitude is rendered with :func:`sar_atd.sar.lut.power_law_render`
      (``gamma = 0.5`` is the paper's quarter-power LUT) with white point ``amplitude_ref``
      in the rendered domain; ``amplitude_ref = 0`` means "content-anchored": the
      ``ref_quantile`` quantile of the scene's rendered amplitude is shown at 8-bit level
      ``ref_level`` (the rule the hybrid training data is rendered with);
    * NaN/inf pixels (float, complex) are set to 0 before rendering and counted
      (``PreparedScene.n_nonfinite``); ``nonfinite = "error"`` refuses such scenes;
    * ``render = "model"``: inside a :class:`sar_atd.scene.SceneDetector`, the rendering
      recorded in the model file (``ModelInfo.render``) replaces ``gamma``,
      ``amplitude_ref``, ``ref_quantile`` and ``ref_level``; ``"config"`` keeps them;
    * ``uint8_match`` (opt-in): path of a reference-quantiles JSON file
      (:func:`sar_atd.sar.lut.write_match_reference`); uint8 scenes are then
      histogram-matched to it (:func:`sar_atd.sar.lut.histogram_match_lut`, grey levels 0
      and 255 kept) instead of passing through: a test-time normalisation of unknown 8-bit
      renderings. Empty (the default): uint8 passes through untouched.

    Attributes:
        tile_size: tile side (px); scenes smaller than a tile give one smaller tile.
        overlap: overlap of neighbouring tiles (px, >= a target plus its shadow).
        batch_size: tiles per inference batch.
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
        gamma: amplitude exponent of the rendering (0.5 = quarter-power LUT).
        amplitude_ref: rendered-domain white point (> 0), or 0 for the content anchor.
        ref_quantile: quantile of the anchor, in (0, 1].
        ref_level: 8-bit level of the anchor, in (0, 255].
        mono16_full_scale: amplitude of uint16 count 65535.
        nonfinite: ``"zero"`` (set to 0 and count) or ``"error"``.
        render: ``"model"`` (the model's recorded rendering) or ``"config"``.
        uint8_match: reference-quantiles file for uint8 scenes, or "" (pass through).
    """

    SECTION: typing.ClassVar[str] = "tiler"

    tile_size: int = 640
    overlap: int = 128
    batch_size: int = 8
    device: str = "auto"
    gamma: float = 0.5
    amplitude_ref: float = 1.0
    ref_quantile: float = 0.5
    ref_level: float = 30.0
    mono16_full_scale: float = 1.0
    nonfinite: str = "zero"
    render: str = "model"
    uint8_match: str = ""

    def __post_init__(self) -> None:
        if self.tile_size < 32:
            raise ValueError(f"TilerConfig.tile_size must be >= 32, got {self.tile_size}")
        if not 0 <= self.overlap < self.tile_size:
            raise ValueError(f"TilerConfig.overlap must be in [0, tile_size), got "
                             f"{self.overlap}")
        if self.batch_size < 1:
            raise ValueError(f"TilerConfig.batch_size must be >= 1, got {self.batch_size}")
        _check_device(self.device, "TilerConfig")
        for name in ("gamma", "mono16_full_scale"):
            v = getattr(self, name)
            if not (v > 0 and v < float("inf")):
                raise ValueError(f"TilerConfig.{name} must be finite and > 0, got {v}")
        if not (self.amplitude_ref >= 0 and self.amplitude_ref < float("inf")):
            raise ValueError(f"TilerConfig.amplitude_ref must be >= 0 (0 = content anchor), "
                             f"got {self.amplitude_ref}")
        if not 0 < self.ref_quantile <= 1:
            raise ValueError(f"TilerConfig.ref_quantile must be in (0, 1], got "
                             f"{self.ref_quantile}")
        if not 0 < self.ref_level <= 255:
            raise ValueError(f"TilerConfig.ref_level must be in (0, 255], got "
                             f"{self.ref_level}")
        if self.nonfinite not in ("zero", "error"):
            raise ValueError(f"TilerConfig.nonfinite must be 'zero' or 'error', got "
                             f"{self.nonfinite!r}")
        if self.render not in ("model", "config"):
            raise ValueError(f"TilerConfig.render must be 'model' or 'config', got "
                             f"{self.render!r}")
        if not isinstance(self.uint8_match, str):
            raise ValueError(f"TilerConfig.uint8_match must be a file path or '', got "
                             f"{self.uint8_match!r}")


@dataclasses.dataclass
class SceneDetectorConfig(RosParamsMixin):
    """Cross-seam merge and output filtering of :class:`sar_atd.scene.SceneDetector`.

    Attributes:
        merge: ``"nms"`` (keep one box per cluster: a box not cut by a tile edge first,
            then the highest score) or ``"merge"`` (greedy non-maximum merging: the
            cluster's enclosing box).
        match: overlap metric between boxes of different tiles: ``"iou"`` or ``"ios"``
            (intersection over the smaller box: a seam-truncated box inside the full one
            scores ~1).
        match_threshold: boxes of different tiles overlapping more than this are one
            target, in (0, 1].
        score_threshold: minimum score of reported detections; negative = the model's
            operating threshold (best F1 at IoU 0.5 on its validation set), 0 for CFAR.
        edge_margin_px: a box within this distance of a tile edge inside the scene counts
            as cut by the seam.
    """

    SECTION: typing.ClassVar[str] = "scene"

    merge: str = "nms"
    match: str = "ios"
    match_threshold: float = 0.5
    score_threshold: float = 0.0
    edge_margin_px: float = 2.0

    def __post_init__(self) -> None:
        if self.merge not in ("nms", "merge"):
            raise ValueError(f"SceneDetectorConfig.merge must be 'nms' or 'merge', got "
                             f"{self.merge!r}")
        if self.match not in ("iou", "ios"):
            raise ValueError(f"SceneDetectorConfig.match must be 'iou' or 'ios', got "
                             f"{self.match!r}")
        if not 0 < self.match_threshold <= 1:
            raise ValueError(f"SceneDetectorConfig.match_threshold must be in (0, 1], got "
                             f"{self.match_threshold}")
        if not self.edge_margin_px >= 0:
            raise ValueError(f"SceneDetectorConfig.edge_margin_px must be >= 0, got "
                             f"{self.edge_margin_px}")


@dataclasses.dataclass
class DetectorRuntimeConfig(RosParamsMixin):
    """Which detector runs and where (see :func:`sar_atd.runtime.resolve_detector`).

    Attributes:
        model: ``cfar``, ``cfar-os`` or a model file (``.pt``, ``.onnx``, ``.engine``).
        backend: ``""`` (from the file suffix), ``auto`` (TensorRT, then ONNX Runtime, then
            torch: the first that runs the file here; the node logs its choice), ``torch``,
            ``onnxruntime`` or ``tensorrt``.
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
        score_threshold: lowest score the backend returns (keep low; the scene detector
            applies the reporting threshold).
        precision: TensorRT engine precision: ``fp16``, ``fp32`` or ``int8``.
        engine_cache_dir: TensorRT engine cache ("" = ``~/.cache/sar_atd/engines``).
        threads: ONNX Runtime intra-op threads (0 = its default).
        box_voting_iou: box voting (:mod:`sar_atd.backends.voting`): ``"model"`` = as the
            model holds (exported graph: its export setting; ``.pt``: recorded, else 0.5);
            an IoU in (0, 1]; 0 or ``"none"`` = off. A setting an exported graph does not
            hold is refused.
        tta: test-time views fused by weighted box fusion, e.g. ``"identity,mirror"``
            (:func:`sar_atd.tta.parse_views`; one inference per view); ``""`` = off.
        verifier: second-stage target verifier file (:mod:`sar_atd.verifier`) that drops
            detections it does not take for vehicles (applied after the backend, on the
            tiles it saw); ``""`` = off.
    """

    SECTION: typing.ClassVar[str] = "detector"

    model: str = "cfar"
    backend: str = ""
    device: str = "auto"
    score_threshold: float = 0.01
    precision: str = "fp16"
    engine_cache_dir: str = ""
    threads: int = 0
    box_voting_iou: float | str = "model"
    tta: str = ""
    verifier: str = ""

    def __post_init__(self) -> None:
        from sar_atd.backends.voting import parse_box_voting_iou

        try:
            parse_box_voting_iou(self.box_voting_iou)
        except ValueError as err:
            raise ValueError(f"DetectorRuntimeConfig.box_voting_iou: {err}") from None
        if self.tta:
            from sar_atd.tta import parse_views

            try:
                parse_views(self.tta)
            except ValueError as err:
                raise ValueError(f"DetectorRuntimeConfig.tta: {err}") from None
        if self.backend not in ("", "auto", "torch", "onnxruntime", "tensorrt"):
            raise ValueError(f"DetectorRuntimeConfig.backend must be '', 'auto', 'torch', "
                             f"'onnxruntime' or 'tensorrt', got {self.backend!r}")
        _check_device(self.device, "DetectorRuntimeConfig")
        if not 0 <= self.score_threshold <= 1:
            raise ValueError(f"DetectorRuntimeConfig.score_threshold must be in [0, 1], got "
                             f"{self.score_threshold}")
        if self.precision not in ("fp16", "fp32", "int8"):
            raise ValueError(f"DetectorRuntimeConfig.precision must be fp16, fp32 or int8, "
                             f"got {self.precision!r}")
        if self.threads < 0:
            raise ValueError(f"DetectorRuntimeConfig.threads must be >= 0, got "
                             f"{self.threads}")


@dataclasses.dataclass
class EvaluatorConfig(RosParamsMixin):
    """Streaming evaluation (see :class:`sar_atd.streaming.MetricAccumulator`).

    Attributes:
        iou_thresholds: IoU thresholds with a named AP and PR curve.
        method: AP interpolation, ``all-point`` or ``coco101``.
        dataset: COCO dataset with the ground truth ("" = ground truth from elsewhere).
    """

    SECTION: typing.ClassVar[str] = "evaluator"

    iou_thresholds: tuple[float, ...] = (0.25, 0.5, 0.7)
    method: str = "all-point"
    dataset: str = ""

    def __post_init__(self) -> None:
        if not self.iou_thresholds or not all(0 < t <= 1 for t in self.iou_thresholds):
            raise ValueError(f"EvaluatorConfig.iou_thresholds must be non-empty, in (0, 1], "
                             f"got {self.iou_thresholds}")
        if self.method not in ("all-point", "coco101"):
            raise ValueError(f"EvaluatorConfig.method must be 'all-point' or 'coco101', got "
                             f"{self.method!r}")
