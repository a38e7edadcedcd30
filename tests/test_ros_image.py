"""sensor_msgs/Image <-> numpy for every supported encoding, message conversions, and the
vision_msgs Detection2DArray conversion round-tripped through a rosbags typestore."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("rclpy", reason="ROS 2 Python wheels not installed (make install)")

from sar_atd_ros.errors import ImageEncodingError  # noqa: E402
from sar_atd_ros.image import decode_image, encode_image, fill_image, image_to_array  # noqa: E402


def _scenes() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    f = rng.random((5, 7), dtype=np.float32)
    return [f, (f + 1j * rng.random((5, 7))).astype(np.complex64),
            rng.integers(0, 65535, (5, 7), dtype=np.uint16),
            rng.integers(0, 255, (5, 7), dtype=np.uint8)]


@pytest.mark.parametrize("i,encoding", [(0, "32FC1"), (1, "32FC2"), (2, "mono16"),
                                        (3, "mono8")])
def test_encodings_round_trip_through_rclpy_image(i: int, encoding: str) -> None:
    """Every encoding survives numpy -> sensor_msgs/Image -> serialized -> numpy exactly."""
    from rclpy.serialization import deserialize_message, serialize_message
    from sensor_msgs.msg import Image

    scene = _scenes()[i]
    msg = fill_image(Image(), scene)
    assert msg.encoding == encoding
    back = image_to_array(deserialize_message(serialize_message(msg), Image))
    assert back.dtype == scene.dtype and back.shape == scene.shape
    assert np.array_equal(back, scene)


def test_padded_rows_and_big_endian_decode() -> None:
    """Row padding (step > width x pixel size) and big-endian data decode to the same scene."""
    scene = _scenes()[0]
    h, w = scene.shape
    padded = np.zeros((h, w * 4 + 12), np.uint8)
    padded[:, :w * 4] = scene.view(np.uint8).reshape(h, w * 4)
    assert np.array_equal(decode_image(h, w, "32FC1", 0, w * 4 + 12, padded.reshape(-1)), scene)
    big = scene.astype(">f4").view(np.uint8).reshape(-1)
    assert np.array_equal(decode_image(h, w, "32FC1", 1, w * 4, big), scene)


@pytest.mark.parametrize("kw,match", [
    ({"encoding": "rgb8"}, "unsupported Image encoding 'rgb8'"),
    ({"height": 0}, "zero size"),
    ({"step": 10}, "step 10 < width"),
    ({"data": np.zeros(7, np.uint8)}, "expected step x height"),
    ({"max_pixels": 10}, "exceeds max_scene_pixels"),
])
def test_malformed_images_are_refused_with_a_clear_error(kw: dict, match: str) -> None:
    f = encode_image(_scenes()[0])
    args = {"height": f.height, "width": f.width, "encoding": f.encoding, "is_bigendian": 0,
            "step": f.step, "data": f.data, **kw}
    with pytest.raises(ImageEncodingError, match=match):
        decode_image(**args)


def test_encode_refuses_non_2d_and_unsupported_dtypes() -> None:
    with pytest.raises(ImageEncodingError, match="non-empty"):
        encode_image(np.zeros((2, 3, 3), np.float32))
    with pytest.raises(ImageEncodingError, match="no Image encoding"):
        encode_image(np.zeros((2, 3), np.int32))


def test_tile_batch_message_round_trip() -> None:
    """A tiler batch sent as mono8 comes back with identical tiles, offsets and indices."""
    from rclpy.serialization import deserialize_message, serialize_message
    from sar_atd_msgs.msg import TileBatch
    from std_msgs.msg import Header

    from sar_atd.config import TilerConfig
    from sar_atd.tiling import Tiler
    from sar_atd_ros.convert import fill_tile_batch, tile_batch_from_msg

    rng = np.random.default_rng(1)
    tiler = Tiler(TilerConfig(tile_size=64, overlap=16, batch_size=3, device="cpu"))
    batches = list(tiler.tiles(rng.random((100, 150), dtype=np.float32)))
    for i, b in enumerate(batches):
        msg = fill_tile_batch(TileBatch(), Header(), 7, b, i, len(batches))
        back = tile_batch_from_msg(deserialize_message(serialize_message(msg), TileBatch))
        assert back.tiles.shape == b.tiles.shape
        assert bool((back.tiles == b.tiles).all())
        assert np.array_equal(back.offsets, b.offsets)
        assert np.array_equal(back.tile_index, b.tile_index) and back.n_tiles == b.n_tiles


def test_detections_message_flags_below_threshold_and_metres() -> None:
    from sar_atd_msgs.msg import SceneDetections as Msg
    from std_msgs.msg import Header

    from sar_atd.scene import SceneDetections
    from sar_atd_ros.convert import detections_from_msg, fill_detections

    dets = SceneDetections(np.array([[0, 0, 10, 20], [5, 5, 6, 6]], np.float32),
                           np.array([0.9, 0.2], np.float32), np.array([0, 3], np.int32),
                           scene_hw=(100, 200), n_tiles=4)
    msg = fill_detections(Msg(), Header(), 3, dets, spacing=(0.2, 0.5), detector="m.pt",
                          backend="torch", model_hash="ab", operating_threshold=0.5)
    boxes, scores = detections_from_msg(msg)
    assert np.array_equal(boxes, dets.boxes) and np.array_equal(scores, dets.scores)
    assert list(msg.below_threshold) == [False, True]
    assert np.allclose(np.asarray(msg.boxes_m).reshape(-1, 4)[0], [0, 0, 5.0, 4.0])
    assert list(msg.tile_index) == [0, 3]


def test_vision_msgs_detection2d_array_round_trips_through_rosbags_typestore() -> None:
    """Detection2DArray built from scene boxes serializes to CDR and back to the same boxes."""
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    from sar_atd_ros.convert import (
        VISION_MSGS_DEFINITIONS,
        from_detection2d_array,
        to_detection2d_array,
    )

    store = get_typestore(Stores.ROS2_KILTED)
    types: dict = {}
    for name, text in VISION_MSGS_DEFINITIONS.items():
        types.update(get_types_from_msg(text, name))
    store.register(types)
    T = store.types.__getitem__
    header = T("std_msgs/msg/Header")(stamp=T("builtin_interfaces/msg/Time")(sec=5, nanosec=7),
                                      frame_id="sar")
    boxes = np.array([[10, 20, 40, 35], [100.5, 3, 120, 50]], np.float32)
    scores = np.array([0.8, 0.3], np.float32)
    msg = to_detection2d_array(T, header, boxes, scores)
    raw = store.serialize_cdr(msg, "vision_msgs/msg/Detection2DArray")
    back = store.deserialize_cdr(raw, "vision_msgs/msg/Detection2DArray")
    b, s, names = from_detection2d_array(back)
    assert np.allclose(b, boxes) and np.allclose(s, scores) and names == ["target", "target"]
    assert back.header.stamp.sec == 5 and back.detections[1].header.frame_id == "sar"
