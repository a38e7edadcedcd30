"""SAR bags: ``sar-atd bag make`` writes rosbag2 (mcap, sqlite3) that rosbags reads back with
the expected types and counts; ``bag info`` summarises; bad requests fail clearly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("rosbags", reason="rosbags not installed (make install)")

from sar_atd_ros.bag import BagScene, bag_info, read_bag_scenes, typestore, write_bag  # noqa: E402
from sar_atd_ros.errors import BagError  # noqa: E402


def _coco(tmp_path: Path, n: int = 3) -> Path:
    from sar_atd.evalset import EvalImage, write_coco_dataset

    rng = np.random.default_rng(0)
    items = [EvalImage(f"img{i}", rng.integers(0, 255, (60, 80), dtype=np.uint8),
                       np.array([[5, 6, 20, 30], [40, 10, 50, 25]], np.float32))
             for i in range(n)]
    write_coco_dataset(items, tmp_path / "coco")
    return tmp_path / "coco"


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_bag_make_from_coco_reads_back_with_rosbags(tmp_path: Path, storage: str) -> None:
    """Every image becomes one Image + one GroundTruth with equal stamps, types and boxes."""
    from rosbags.highlevel import AnyReader

    from sar_atd_training.cli import main

    out = tmp_path / "bag"
    assert main(["bag", "make", "--dataset", str(_coco(tmp_path)), "--out", str(out),
                 "--storage", storage, "--rate-hz", "4"]) == 0
    with AnyReader([out], default_typestore=typestore()) as reader:
        types = {c.topic: c.msgtype for c in reader.connections}
        assert types == {"/sar/scene": "sensor_msgs/msg/Image",
                         "/sar/ground_truth": "sar_atd_msgs/msg/GroundTruth"}
        counts = {c.topic: c.msgcount for c in reader.connections}
        assert counts == {"/sar/scene": 3, "/sar/ground_truth": 3}
        stamps: dict[str, list] = {"/sar/scene": [], "/sar/ground_truth": []}
        for conn, _t, raw in reader.messages():
            msg = reader.deserialize(raw, conn.msgtype)
            stamps[conn.topic].append((msg.header.stamp.sec, msg.header.stamp.nanosec))
            if conn.topic == "/sar/scene":
                assert msg.encoding == "mono8" and (msg.height, msg.width) == (60, 80)
            else:
                assert np.allclose(np.asarray(msg.boxes_px).reshape(-1, 4)[0], [5, 6, 20, 30])
        assert stamps["/sar/scene"] == stamps["/sar/ground_truth"]
    info = bag_info(out)
    assert info["scenes"] == 3 and abs(info["scene_rate_hz"] - 4) < 1e-6
    assert info["encodings"] == {"mono8": 3}


def test_float_and_complex_scenes_round_trip(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    a = rng.random((40, 50), dtype=np.float32)
    c = (a + 1j * a[::-1]).astype(np.complex64)
    write_bag([BagScene("a", a, np.zeros((0, 4), np.float32)),
               BagScene("c", c, np.array([[1, 2, 3, 4]], np.float32), ["T72"])],
              tmp_path / "b")
    got = read_bag_scenes(tmp_path / "b")
    assert [g[2] for g in got] == ["a", "c"]
    assert np.array_equal(got[0][0], a) and np.array_equal(got[1][0], c)
    assert got[0][1].shape == (0, 4) and np.array_equal(got[1][1], [[1, 2, 3, 4]])


def test_bag_info_cli_prints_topics(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from sar_atd_training.cli import main

    write_bag([BagScene("a", np.ones((8, 8), np.uint16), np.zeros((0, 4)))], tmp_path / "b",
              storage="sqlite3")
    assert main(["bag", "info", str(tmp_path / "b")]) == 0
    out = capsys.readouterr().out
    assert "/sar/scene" in out and "mono16 x1" in out and "8x8" in out


def test_bad_requests_fail_clearly(tmp_path: Path) -> None:
    scene = [BagScene("a", np.ones((8, 8), np.float32), np.zeros((0, 4)))]
    write_bag(scene, tmp_path / "b")
    with pytest.raises(FileExistsError, match="already exists"):
        write_bag(scene, tmp_path / "b")
    with pytest.raises(BagError, match="unknown bag storage"):
        write_bag(scene, tmp_path / "c", storage="zip")
    with pytest.raises(BagError, match="bag not found"):
        bag_info(tmp_path / "missing")
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "metadata.yaml").write_text("not: a bag\n")
    with pytest.raises(BagError, match="cannot read bag"):
        bag_info(tmp_path / "junk")
