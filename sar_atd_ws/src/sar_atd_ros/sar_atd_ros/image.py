"""sensor_msgs/Image <-> numpy scene arrays, for rclpy messages and rosbags messages alike.

Supported encodings (little-endian, one channel per pixel):

=========  ==========================  ================================
encoding   array                        meaning
=========  ==========================  ================================
``32FC1``  float32 (H, W)              amplitude (linear magnitude)
``32FC2``  complex64 (H, W)            complex image, (re, im) pairs
``mono16`` uint16 (H, W)               amplitude counts
``mono8``  uint8 (H, W)                8-bit rendering (used as is)
=========  ==========================  ================================

Rows may be padded (``step`` > width x bytes per pixel); anything else (unknown encoding,
zero size, ``step * height != len(data)``, a scene above ``max_pixels``) raises
:class:`~sar_atd_ros.errors.ImageEncodingError` naming the problem before any copy.
"""

from __future__ import annotations

import array
import sys
from dataclasses import dataclass
from typing import Any

import numpy as np

from sar_atd_ros.errors import ImageEncodingError

__all__ = ["ENCODINGS", "ImageFields", "encode_image", "decode_image", "image_to_array",
           "fill_image", "byte_array"]

ENCODINGS: dict[str, tuple[np.dtype, int]] = {
    "32FC1": (np.dtype("<f4"), 1),
    "32FC2": (np.dtype("<f4"), 2),
    "mono16": (np.dtype("<u2"), 1),
    "mono8": (np.dtype("u1"), 1),
}
"""encoding -> (element dtype, channels)."""

DEFAULT_MAX_PIXELS = 16384 * 16384


@dataclass
class ImageFields:
    """The payload fields of a sensor_msgs/Image (header excluded)."""

    height: int
    width: int
    encoding: str
    is_bigendian: int
    step: int
    data: np.ndarray  # uint8 (step * height,)


def encode_image(scene: np.ndarray) -> ImageFields:
    """Image fields of a (H, W) scene: float32 -> 32FC1, complex -> 32FC2, uint16 -> mono16,
    uint8 -> mono8 (other floats are cast to float32).

    Raises:
        ImageEncodingError: not 2-D, empty, or an unsupported dtype.
    """
    a = np.asarray(scene)
    if a.ndim != 2 or a.size == 0:
        raise ImageEncodingError(f"scene must be a non-empty (H, W) array, got shape {a.shape}")
    if np.iscomplexobj(a):
        enc, a = "32FC2", a.astype(np.complex64, copy=False)
    elif a.dtype == np.uint8:
        enc = "mono8"
    elif a.dtype == np.uint16:
        enc = "mono16"
    elif np.issubdtype(a.dtype, np.floating):
        enc, a = "32FC1", a.astype(np.float32, copy=False)
    else:
        raise ImageEncodingError(f"no Image encoding for scene dtype {a.dtype} (use float32, "
                                 "complex64, uint16 or uint8)")
    if sys.byteorder != "little" and a.dtype.itemsize > 1:
        a = a.byteswap().view(a.dtype.newbyteorder())
    a = np.ascontiguousarray(a)
    h, w = a.shape
    return ImageFields(h, w, enc, 0, int(a.strides[0]), a.reshape(-1).view(np.uint8))


def decode_image(height: int, width: int, encoding: str, is_bigendian: int, step: int,
                 data: Any, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """The (H, W) scene of Image fields (a view of ``data`` where possible).

    Returns:
        float32 (32FC1), complex64 (32FC2), uint16 (mono16) or uint8 (mono8) (H, W).

    Raises:
        ImageEncodingError: unsupported encoding, zero or absurd size, wrong step or data
            length.
    """
    if encoding not in ENCODINGS:
        raise ImageEncodingError(f"unsupported Image encoding {encoding!r}: expected one of "
                                 f"{sorted(ENCODINGS)}")
    h, w = int(height), int(width)
    if h <= 0 or w <= 0:
        raise ImageEncodingError(f"Image has zero size: {h}x{w}")
    if h * w > max_pixels:
        raise ImageEncodingError(f"Image of {h}x{w} = {h * w} pixels exceeds max_scene_pixels "
                                 f"= {max_pixels}")
    dt, ch = ENCODINGS[encoding]
    if is_bigendian and dt.itemsize > 1:
        dt = dt.newbyteorder(">")
    row = w * ch * dt.itemsize
    if step < row:
        raise ImageEncodingError(f"Image step {step} < width x pixel size = {row} bytes "
                                 f"({w} px of {encoding})")
    buf = np.frombuffer(data, np.uint8) if not isinstance(data, np.ndarray) else data
    buf = buf.reshape(-1).view(np.uint8)
    if buf.size != step * h:
        raise ImageEncodingError(f"Image data has {buf.size} bytes, expected step x height = "
                                 f"{step} x {h} = {step * h}")
    rows = buf.reshape(h, step)[:, :row]
    a = np.ascontiguousarray(rows).view(dt).reshape(h, w * ch)
    if dt.byteorder == ">":
        a = a.astype(dt.newbyteorder("<"))
    if ch == 2:
        a = a.view(np.complex64) if a.dtype == np.float32 else a.astype(np.float32).view(
            np.complex64)
    return a.reshape(h, w)


def image_to_array(msg: Any, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """The scene of an Image message (rclpy or rosbags); see :func:`decode_image`."""
    return decode_image(msg.height, msg.width, msg.encoding, msg.is_bigendian, msg.step,
                        msg.data, max_pixels)


def fill_image(msg: Any, scene: np.ndarray) -> Any:
    """Set the payload of an rclpy ``sensor_msgs.msg.Image`` from a scene; returns ``msg``.

    ``data`` is assigned as an ``array.array('B')`` filled with one buffer copy (assigning
    a memoryview or ndarray makes rclpy convert byte by byte: ~100x slower).
    """
    f = encode_image(scene)
    msg.height, msg.width, msg.encoding = f.height, f.width, f.encoding
    msg.is_bigendian, msg.step = f.is_bigendian, f.step
    msg.data = byte_array(f.data)
    return msg


def byte_array(data: np.ndarray) -> array.array:
    """``array.array('B')`` holding ``data``'s bytes (the fast type for rclpy uint8[])."""
    out = array.array("B")
    out.frombytes(memoryview(np.ascontiguousarray(data).reshape(-1).view(np.uint8)))
    return out
