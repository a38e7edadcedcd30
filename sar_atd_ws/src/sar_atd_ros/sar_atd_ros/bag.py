"""SAR bags: rosbag2 files (mcap or sqlite3) of scenes and ground truth, via ``rosbags``.

Layout written by :func:`write_bag` (what ``scene_player`` replays, and what a real
``ros2 bag record /sar/scene /sar/ground_truth`` of a live graph holds)::

    /sar/ground_truth   sar_atd_msgs/msg/GroundTruth  boxes of scene i (written first)
    /sar/scene          sensor_msgs/msg/Image          scene i (32FC1, 32FC2, mono16, mono8)

Both messages of scene i carry the same header stamp (the bag time of the scene, ``1/rate``
apart); that stamp pairs them on replay. The custom types are registered in the
``rosbags`` typestore from ``sar_atd_msgs/msg/*.msg``, and their definitions are stored in
the bag, so any rosbag2 reader can decode it.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sar_atd_ros.errors import BagError
from sar_atd_ros.image import encode_image

__all__ = ["SCENE_TOPIC", "GT_TOPIC", "BagScene", "typestore", "write_bag", "bag_info",
           "format_bag_info", "open_scene_stream", "read_bag_scenes", "read_bag_detections",
           "msg_dir"]

SCENE_TOPIC = "/sar/scene"
GT_TOPIC = "/sar/ground_truth"
IMAGE_TYPE = "sensor_msgs/msg/Image"
GT_TYPE = "sar_atd_msgs/msg/GroundTruth"
STORAGES = ("mcap", "sqlite3")


@dataclass
class BagScene:
    """One scene to write: (H, W) float32/complex64/uint16/uint8 pixels and (M, 4) float32
    xyxy ground-truth boxes in scene pixels."""

    name: str
    image: np.ndarray
    boxes: np.ndarray
    labels: Sequence[str] = field(default_factory=list)


def msg_dir() -> Path:
    """Folder of the ``sar_atd_msgs`` ``.msg`` files (source tree, else installed share)."""
    import sys

    here = Path(__file__).resolve().parents[2] / "sar_atd_msgs" / "msg"
    for cand in (here, Path(sys.prefix) / "share" / "sar_atd_msgs" / "msg"):
        if cand.is_dir():
            return cand
    raise BagError(f"sar_atd_msgs message definitions not found (looked in {here})")


def typestore(extra_msg_dirs: Iterable[Path] = ()) -> Any:
    """A ROS 2 (Kilted) ``rosbags`` typestore with the ``sar_atd_msgs`` types registered."""
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    store = get_typestore(Stores.ROS2_KILTED)
    types: dict = {}
    for d in (msg_dir(), *extra_msg_dirs):
        pkg = "sar_atd_msgs" if d == msg_dir() else Path(d).parent.name
        for f in sorted(Path(d).glob("*.msg")):
            types.update(get_types_from_msg(f.read_text(), f"{pkg}/msg/{f.stem}"))
    store.register(types)
    return store


def _time(store: Any, t_ns: int) -> Any:
    Time = store.types["builtin_interfaces/msg/Time"]
    return Time(sec=int(t_ns // 1_000_000_000), nanosec=int(t_ns % 1_000_000_000))


def write_bag(scenes: Iterable[BagScene], out: str | Path, storage: str = "mcap",
              rate_hz: float = 1.0, frame_id: str = "sar", start_ns: int = 1_000_000_000,
              overwrite: bool = False) -> dict[str, Any]:
    """Write scenes and their ground truth to a new rosbag2 folder ``out`` (atomically).

    Args:
        scenes: the scenes, in order.
        out: output bag folder (refused when it exists, unless ``overwrite``).
        storage: ``mcap`` or ``sqlite3``.
        rate_hz: scene rate of the bag timestamps (> 0).
        frame_id: header frame of every scene.
        start_ns: bag time of the first scene.

    Returns:
        Summary: scenes, boxes, encodings, storage, bytes.

    Raises:
        BagError: bad storage or rate; FileExistsError: ``out`` exists.
    """
    from rosbags.rosbag2 import StoragePlugin, Writer

    from sar_atd.atomic import atomic_dir

    if storage not in STORAGES:
        raise BagError(f"unknown bag storage {storage!r}: expected one of {list(STORAGES)}")
    if not rate_hz > 0:
        raise BagError(f"bag rate must be > 0 Hz, got {rate_hz}")
    out = Path(out)
    if out.exists() and not overwrite:
        raise FileExistsError(f"bag {out} already exists (choose another path)")
    store = typestore()
    Image = store.types[IMAGE_TYPE]
    GroundTruth = store.types[GT_TYPE]
    Header = store.types["std_msgs/msg/Header"]
    plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
    n = n_boxes = 0
    encodings: dict[str, int] = {}
    with atomic_dir(out, overwrite=overwrite) as tmp:
        work = tmp / out.name
        with Writer(work, version=9, storage_plugin=plugin) as writer:
            c_gt = writer.add_connection(GT_TOPIC, GT_TYPE, typestore=store)
            c_img = writer.add_connection(SCENE_TOPIC, IMAGE_TYPE, typestore=store)
            for i, sc in enumerate(scenes):
                t = start_ns + round(i * 1e9 / rate_hz)
                header = Header(stamp=_time(store, t), frame_id=frame_id)
                f = encode_image(sc.image)
                boxes = np.asarray(sc.boxes, np.float32).reshape(-1, 4)
                labels = [str(x) for x in (sc.labels or [])] or [""] * len(boxes)
                if len(labels) != len(boxes):
                    raise BagError(f"scene {sc.name}: {len(boxes)} boxes but {len(labels)} "
                                   "labels")
                gt = GroundTruth(header=header, sequence=i + 1, bag_stamp=_time(store, t),
                                 scene_name=sc.name, scene_height=f.height,
                                 scene_width=f.width, boxes_px=boxes.reshape(-1),
                                 labels=labels)
                writer.write(c_gt, t, store.serialize_cdr(gt, GT_TYPE))
                img = Image(header=header, height=f.height, width=f.width,
                            encoding=f.encoding, is_bigendian=0, step=f.step, data=f.data)
                writer.write(c_img, t + 1, store.serialize_cdr(img, IMAGE_TYPE))
                n += 1
                n_boxes += len(boxes)
                encodings[f.encoding] = encodings.get(f.encoding, 0) + 1
        for p in work.iterdir():
            shutil.move(str(p), tmp / p.name)
        work.rmdir()
    size = sum(p.stat().st_size for p in out.iterdir())
    return {"bag": str(out), "storage": storage, "scenes": n, "boxes": n_boxes,
            "encodings": encodings, "rate_hz": rate_hz, "bytes": size}


def _reader(path: Path) -> Any:
    from rosbags.highlevel import AnyReader

    if not path.exists():
        raise BagError(f"bag not found: {path}")
    try:
        reader = AnyReader([path], default_typestore=typestore())
        reader.open()
    except Exception as err:  # rosbags raises several types; name the bag and the reason
        raise BagError(f"cannot read bag {path}: {err}") from None
    return reader


def bag_info(path: str | Path) -> dict[str, Any]:
    """Topics, types, counts, duration, rate and Image encodings/sizes of a bag.

    Raises:
        BagError: missing or unreadable bag.
    """
    path = Path(path)
    reader = _reader(path)
    try:
        topics: dict[str, dict[str, Any]] = {}
        for c in reader.connections:
            topics.setdefault(c.topic, {"type": c.msgtype, "count": 0})
            topics[c.topic]["count"] += c.msgcount
        enc: dict[str, int] = {}
        sizes: set[tuple[int, int]] = set()
        img_conns = [c for c in reader.connections if c.msgtype == IMAGE_TYPE]
        try:
            for conn, _t, raw in (reader.messages(connections=img_conns) if img_conns
                                  else ()):
                msg = reader.deserialize(raw, conn.msgtype)
                enc[msg.encoding] = enc.get(msg.encoding, 0) + 1
                sizes.add((int(msg.height), int(msg.width)))
        except Exception as err:
            raise BagError(f"bag {path} is truncated or corrupt: {err}") from None
        duration = (reader.end_time - reader.start_time) / 1e9 if reader.message_count else 0.0
        n_scenes = sum(enc.values())
        rate = (n_scenes - 1) / duration if n_scenes > 1 and duration > 0 else 0.0
        return {"bag": str(path), "messages": reader.message_count, "duration_s": duration,
                "topics": topics, "scenes": n_scenes, "scene_rate_hz": rate,
                "encodings": enc, "scene_sizes": sorted(sizes)}
    finally:
        reader.close()


def format_bag_info(info: dict[str, Any]) -> str:
    """Human-readable summary of :func:`bag_info`."""
    lines = [f"bag:        {info['bag']}",
             f"messages:   {info['messages']}  duration {info['duration_s']:.3f} s",
             f"scenes:     {info['scenes']}  at {info['scene_rate_hz']:.3g} Hz",
             f"encodings:  {', '.join(f'{k} x{v}' for k, v in info['encodings'].items())}",
             f"sizes:      {', '.join(f'{h}x{w}' for h, w in info['scene_sizes'])}",
             "topics:"]
    for name, t in sorted(info["topics"].items()):
        lines.append(f"  {name:<24} {t['type']:<32} {t['count']}")
    return "\n".join(lines)


def _mcap_file(path: Path) -> Path | None:
    """The .mcap file of a bag folder or file (None when it is not an mcap bag)."""
    if path.is_file():
        return path if path.suffix == ".mcap" else None
    files = sorted(path.glob("*.mcap")) if path.is_dir() else []
    return files[0] if len(files) == 1 else None


def scan_mcap(path: Path) -> Iterator[tuple[str, str, int, bytes]]:
    """(topic, message type, log time ns, raw CDR) of an mcap file read record by record,
    without its summary: what a recording cut short (no footer) still holds.

    Chunks are read as far as they go when uncompressed; a compressed chunk must be whole.

    Raises:
        BagError: where the file stops making sense (byte offset and why), after the
            messages before that point were yielded.
    """
    import mmap
    import struct

    with open(path, "rb") as fh:
        if fh.read(8) != b"\x89MCAP0\r\n":
            raise BagError(f"{path}: not an mcap file (bad magic)")
        data = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
    magic_len = 8
    schemas: dict[int, str] = {}
    channels: dict[int, tuple[str, str]] = {}

    def string(buf: bytes, at: int) -> tuple[str, int]:
        (n,) = struct.unpack_from("<I", buf, at)
        return buf[at + 4:at + 4 + n].decode(), at + 4 + n

    def records(buf: bytes, at: int, end: int, base: int) -> Iterator[tuple[int, bytes]]:
        while at < end:
            if at + 9 > end:
                raise BagError(f"record header cut at byte {base + at}")
            op, n = buf[at], struct.unpack_from("<Q", buf, at + 1)[0]
            if at + 9 + n > end:
                if op == 0x06:  # a chunk cut short: the records it still holds
                    yield op, buf[at + 9:end]
                raise BagError(f"record {op:#04x} of {n} bytes cut at byte {base + end}")
            yield op, buf[at + 9:at + 9 + n]
            at += 9 + n

    def messages(buf: bytes, at: int, end: int, base: int
                 ) -> Iterator[tuple[str, str, int, bytes]]:
        for op, rec in records(buf, at, end, base):
            if op == 0x03:
                (sid,) = struct.unpack_from("<H", rec)
                schemas[sid] = string(rec, 2)[0]
            elif op == 0x04:
                cid, sid = struct.unpack_from("<HH", rec)
                channels[cid] = (string(rec, 4)[0], schemas.get(sid, ""))
            elif op == 0x05:
                cid, _seq, t = struct.unpack_from("<HIQ", rec)
                if cid in channels:
                    yield (*channels[cid], t, rec[22:])
            elif op == 0x06:
                compression, at2 = string(rec, 28)
                if len(rec) < at2 + 8:
                    raise BagError("chunk header cut short")
                (size,) = struct.unpack_from("<Q", rec, at2)
                body = rec[at2 + 8:at2 + 8 + size]
                if compression:
                    if len(body) < size:
                        raise BagError(f"{compression} chunk cut short")
                    from rosbags.rosbag2.storage_mcap import decompress

                    (usize,) = struct.unpack_from("<Q", rec, 16)
                    (crc,) = struct.unpack_from("<I", rec, 24)
                    body = decompress(body, compression, usize, crc)
                yield from messages(body, 0, len(body), 0)
            elif op == 0x0F:  # data end: the summary follows
                return

    try:
        yield from messages(data, magic_len, len(data), 0)  # type: ignore[arg-type]
    except BagError as err:
        raise BagError(f"{path}: {err}") from None
    except (struct.error, UnicodeDecodeError, ValueError, KeyError) as err:
        raise BagError(f"{path}: malformed record ({err})") from None
    finally:
        data.close()


class SceneStream:
    """Raw (CDR) scene and ground-truth messages of a bag, in bag order.

    A mcap recording cut short (no footer, e.g. the recorder died) is read record by record
    (:func:`scan_mcap`) up to where it stops; its scene count is unknown (``n_scenes``
    None) and :meth:`messages` raises :class:`BagError` naming how far it got.
    """

    def __init__(self, path: Path, scene_topic: str = "", gt_topic: str = "") -> None:
        self.path = path
        self.scan: Path | None = None
        self.scene_topic, self.gt_topic = scene_topic, gt_topic
        try:
            self.reader = _reader(path)
        except BagError as err:
            mcap = _mcap_file(path) if path.exists() else None
            if mcap is None or "end magic" not in str(err):
                raise
            self.scan, self.reader = mcap, None
            self.n_scenes: int | None = None
            self.open_error = str(err)
            return
        conns = self.reader.connections
        scenes = [c for c in conns if (c.topic == scene_topic if scene_topic
                                       else c.msgtype == IMAGE_TYPE)]
        if len({c.topic for c in scenes}) != 1:
            self.reader.close()
            found = sorted({c.topic for c in conns if c.msgtype == IMAGE_TYPE})
            raise BagError(f"bag {path}: expected one sensor_msgs/Image scene topic "
                           f"({scene_topic or 'any'}), found {found or 'none'}")
        gts = [c for c in conns if (c.topic == gt_topic if gt_topic else c.msgtype == GT_TYPE)]
        self.scene_conns, self.gt_conns = scenes, gts
        self.n_scenes = sum(c.msgcount for c in scenes)

    def messages(self) -> Iterator[tuple[int, str, bytes]]:
        """(bag time ns, ``"scene"`` | ``"gt"``, raw CDR bytes).

        Raises:
            BagError: the bag is truncated or corrupt (names how far it got).
        """
        self.n_read = 0
        if self.scan is not None:
            yield from self._scan_messages()
            return
        scene_ids = {id(c) for c in self.scene_conns}
        it = self.reader.messages(connections=[*self.gt_conns, *self.scene_conns])
        while True:
            try:
                item = next(it)
            except StopIteration:
                return
            except Exception as err:
                raise BagError(f"bag {self.path} is truncated or corrupt: read "
                               f"{self.n_read} of {self.n_scenes} scenes before: "
                               f"{err}") from None
            conn, t, raw = item
            kind = "scene" if id(conn) in scene_ids else "gt"
            self.n_read += kind == "scene"
            yield t, kind, bytes(raw)

    def _scan_messages(self) -> Iterator[tuple[int, str, bytes]]:
        assert self.scan is not None
        try:
            for topic, msgtype, t, raw in scan_mcap(self.scan):
                if (topic == self.scene_topic if self.scene_topic else msgtype == IMAGE_TYPE):
                    self.n_read += 1
                    yield t, "scene", raw
                elif topic == self.gt_topic if self.gt_topic else msgtype == GT_TYPE:
                    yield t, "gt", raw
        except BagError as err:
            raise BagError(f"bag {self.path} is truncated or corrupt: read {self.n_read} of "
                           f"? scenes before: {err}") from None
        raise BagError(f"bag {self.path} is truncated or corrupt: read {self.n_read} of ? "
                       f"scenes, then the file ended without its footer")

    def close(self) -> None:
        if self.reader is not None:
            self.reader.close()


def open_scene_stream(path: Path, scene_topic: str = "", gt_topic: str = "") -> SceneStream:
    """Open a bag for replay (see :class:`SceneStream`)."""
    return SceneStream(Path(path), scene_topic, gt_topic)


def read_bag_scenes(path: str | Path, max_pixels: int = 1 << 28
                    ) -> list[tuple[np.ndarray, np.ndarray, str]]:
    """Every scene of a bag with its ground truth: [(scene (H, W), boxes (M, 4), name)].

    Scenes without ground truth get empty boxes. Used by the offline comparisons.
    """
    from sar_atd_ros.image import decode_image

    stream = open_scene_stream(Path(path))
    out = []
    gts: dict[tuple[int, int], Any] = {}
    try:
        for _t, kind, raw in stream.messages():
            msg = stream.reader.deserialize(raw, GT_TYPE if kind == "gt" else IMAGE_TYPE)
            key = (int(msg.header.stamp.sec), int(msg.header.stamp.nanosec))
            if kind == "gt":
                gts[key] = msg
                continue
            arr = decode_image(msg.height, msg.width, msg.encoding, msg.is_bigendian,
                               msg.step, msg.data, max_pixels)
            gt = gts.pop(key, None)
            boxes = (np.asarray(gt.boxes_px, np.float32).reshape(-1, 4) if gt is not None
                     else np.zeros((0, 4), np.float32))
            out.append((arr.copy(), boxes, gt.scene_name if gt is not None else ""))
    finally:
        stream.close()
    return out


def read_bag_detections(path: str | Path) -> list[tuple[np.ndarray, np.ndarray]]:
    """Scene detections recorded in a bag (``*/detections`` topic, e.g. by ``sar-atd run
    --record``), in the detector's scene order: [(boxes (N, 4) float32 px, scores (N,))]."""
    reader = _reader(Path(path))
    out = []
    try:
        conns = [c for c in reader.connections if c.topic.endswith("/detections")]
        for conn, _t, raw in (reader.messages(connections=conns) if conns else ()):
            m = reader.deserialize(raw, conn.msgtype)
            out.append((int(m.sequence), np.asarray(m.boxes_px, np.float32).reshape(-1, 4),
                        np.asarray(m.scores, np.float32)))
    finally:
        reader.close()
    return [(b, s) for _q, b, s in sorted(out, key=lambda x: x[0])]
