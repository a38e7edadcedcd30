"""``python -m sar_atd_ros.detector``: the detector node of split layouts (tiles in)."""

from sar_atd_ros.detector_node import main

if __name__ == "__main__":
    raise SystemExit(main())
