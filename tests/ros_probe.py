"""Test-side rclpy node with its own context and executor (host-only discovery)."""

from __future__ import annotations

import time
from typing import Any


class ProbeNode:
    """An rclpy node in a fresh context on ``domain_id``, spun by hand from the test.

    Subclasses add their publishers and subscriptions to ``self.node``.
    """

    def __init__(self, domain_id: int, name: str) -> None:
        import os

        import rclpy
        from rclpy.executors import SingleThreadedExecutor

        os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
        self.rclpy = rclpy
        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=domain_id)
        self.node = rclpy.create_node(name, context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)

    def spin_until(self, cond: Any, timeout_s: float) -> bool:
        """Spin until ``cond()`` is true or ``timeout_s`` passes; returns ``cond()``."""
        t_end = time.monotonic() + timeout_s
        while time.monotonic() < t_end:
            if cond():
                return True
            self.executor.spin_once(timeout_sec=0.05)
        return bool(cond())

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
        self.rclpy.shutdown(context=self.context)
