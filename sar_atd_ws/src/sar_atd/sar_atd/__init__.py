"""SAR-ATD core library: sensor model, I/O, boxes, metrics, detectors and runtime backends.

Pure Python + numpy/torch. Nothing here imports ROS or knows about training loops, so the
same code serves offline training/evaluation (``training/``) and the ROS 2 nodes.
"""

__version__ = "0.1.0"
