"""Detectors behind one interface: the CFAR baseline and the neural models' backends."""

from sar_atd.detectors.base import Detections, Detector

__all__ = ["Detections", "Detector"]
