"""``python -m sar_atd_ros.scene_detector``: the one-process tiler + detector node."""

from sar_atd_ros.detector_node import main_scene_detector

if __name__ == "__main__":
    raise SystemExit(main_scene_detector())
