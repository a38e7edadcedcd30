"""Errors raised by the ROS 2 package. Each names the offending message, file or value."""

from sar_atd.errors import SarAtdError

BAG_ERROR_EXIT = 3
"""Exit code of a ``scene_player`` that stopped early on a truncated or corrupt bag (after
ending the stream cleanly, so the scenes already sent are accounted for)."""


class ImageEncodingError(SarAtdError, ValueError):
    """A sensor_msgs/Image cannot be turned into a scene array (encoding, size, step)."""


class BagError(SarAtdError, ValueError):
    """A bag is missing, unreadable, truncated or lacks the expected topics."""


class GraphError(SarAtdError, RuntimeError):
    """A node of the graph failed to start or crashed (names the node)."""
