"""Errors raised by the ROS 2 package. Each names the offending message, file or value."""

from sar_atd.errors import SarAtdError


class ImageEncodingError(SarAtdError, ValueError):
    """A sensor_msgs/Image cannot be turned into a scene array (encoding, size, step)."""


class BagError(SarAtdError, ValueError):
    """A bag is missing, unreadable, truncated or lacks the expected topics."""


class GraphError(SarAtdError, RuntimeError):
    """A node of the graph failed to start or crashed (names the node)."""
