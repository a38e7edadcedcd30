"""Managed (lifecycle) nodes: the transitions of the detector nodes and a client to drive them.

A detector node is an rclpy ``LifecycleNode`` (``rclpy.lifecycle``, present from ROS 2
Humble on) with the standard state machine:

============  ===========================================================================
transition    what the node does
============  ===========================================================================
configure     loads the model / builds the TensorRT engine; a missing or corrupt model
              file fails the transition with one logged line, the node stays
              *unconfigured* and a later ``configure`` succeeds once the file is there
activate      subscribes to its input and creates its ``detections`` publisher (the player
              waits for that publisher, so no scene is sent before processing starts)
deactivate    drops the subscription and the publisher: processing stops
cleanup       releases the detector (and the CUDA memory torch cached for it)
shutdown      releases everything, from any state
============  ===========================================================================

``node.autostart`` (default true) runs configure + activate at start-up, as a plain node
would (``ros2 run``); ``sar-atd run`` and the launch file set it false and drive the
transitions themselves (:class:`LifecycleClient` here; ``launch_ros`` lifecycle events in
``sar_atd.launch.py``).
"""

from __future__ import annotations

import gc
import os
import sys
import time
from collections.abc import Callable
from typing import Any

from rclpy.lifecycle import LifecycleState, TransitionCallbackReturn

__all__ = ["ManagedProcessing", "LifecycleClient", "LifecycleError", "bring_up",
           "release_device_memory", "TRANSITIONS"]

TRANSITIONS = ("configure", "activate", "deactivate", "cleanup", "shutdown")


class LifecycleError(RuntimeError):
    """A managed node refused a transition (the node's log says why)."""


def release_device_memory() -> None:
    """Return memory of dropped models: Python garbage, then torch's CUDA cache."""
    gc.collect()
    torch = sys.modules.get("torch")  # never import torch just for this
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


class ManagedProcessing:
    """Lifecycle callbacks of a processing node, mixed in before ``LifecycleNode``.

    The node implements four hooks: ``_configure_resources()`` (load; raise on failure),
    ``_release_resources()``, ``_start_processing()`` and ``_stop_processing()``. A
    failure in configure is logged once (the message of the exception), kept in
    ``last_error`` for diagnostics, and reported as a failed transition.
    """

    last_error: str = ""
    configure_error: Exception | None = None
    state_label: str = "unconfigured"
    _raise_configure_error = False  # autostart without retry: the caller reports it

    # --- hooks -------------------------------------------------------------------------
    def _configure_resources(self) -> None:
        raise NotImplementedError

    def _release_resources(self) -> None:
        raise NotImplementedError

    def _start_processing(self) -> None:
        raise NotImplementedError

    def _stop_processing(self) -> None:
        raise NotImplementedError

    # --- rclpy lifecycle callbacks -----------------------------------------------------
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            self._configure_resources()
        except Exception as err:  # noqa: BLE001 - any load failure leaves the node recoverable
            self.configure_error = err
            self.last_error = f"configure failed: {err}"
            if not self._raise_configure_error:
                self.get_logger().error(self.last_error)  # type: ignore[attr-defined]
            self._release_resources()
            release_device_memory()
            return TransitionCallbackReturn.FAILURE
        self.configure_error = None
        self.last_error = ""
        self.state_label = "inactive"
        self.get_logger().info("configured")  # type: ignore[attr-defined]
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._start_processing()
        self.state_label = "active"
        self.get_logger().info("active: processing")  # type: ignore[attr-defined]
        return super().on_activate(state)  # type: ignore[misc]

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_processing()
        self.state_label = "inactive"
        self.get_logger().info("inactive: processing stopped")  # type: ignore[attr-defined]
        return super().on_deactivate(state)  # type: ignore[misc]

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release_resources()
        release_device_memory()
        self.state_label = "unconfigured"
        self.get_logger().info("cleaned up: model released")  # type: ignore[attr-defined]
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_processing()
        self._release_resources()
        release_device_memory()
        self.state_label = "finalized"
        return TransitionCallbackReturn.SUCCESS

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_processing()
        self._release_resources()
        release_device_memory()
        self.state_label = "unconfigured"
        return TransitionCallbackReturn.SUCCESS  # back to unconfigured: recoverable

    # --- self-driven start-up ----------------------------------------------------------
    def autostart(self, retry_period_s: float | None = None) -> None:
        """configure + activate now (plain-node behaviour).

        Args:
            retry_period_s: when set, a failed configure is retried on a timer with this
                period (waiting for a model file); when None the failure is raised.

        Raises:
            Exception: the configure error, when not retrying.
        """
        self._raise_configure_error = retry_period_s is None
        try:
            configured = self.trigger_configure() == TransitionCallbackReturn.SUCCESS  # type: ignore
        finally:
            self._raise_configure_error = False
        if configured:
            self.trigger_activate()  # type: ignore[attr-defined]
            return
        if retry_period_s is None:
            assert self.configure_error is not None
            raise self.configure_error
        self.get_logger().warning(  # type: ignore[attr-defined]
            f"{self.last_error}; retrying every {retry_period_s:g} s")

        def retry() -> None:
            if self.trigger_configure() == TransitionCallbackReturn.SUCCESS:  # type: ignore
                self.destroy_timer(timer)  # type: ignore[attr-defined]
                self.trigger_activate()  # type: ignore[attr-defined]

        timer = self.create_timer(retry_period_s, retry)  # type: ignore[attr-defined]


class LifecycleClient:
    """Drives lifecycle nodes over their ``change_state``/``get_state`` services.

    Runs its own rclpy context (so it can live inside a process that has another one, e.g.
    ``sar-atd run`` or a test) on the given DDS domain.

    Args:
        domain_id: ROS domain of the nodes.
        name: name of the client node.
        localhost_only: keep this client's DDS discovery on this host (as the nodes').
    """

    def __init__(self, domain_id: int | None = None, name: str = "sar_atd_lifecycle",
                 localhost_only: bool = True) -> None:
        import rclpy
        from rclpy.executors import SingleThreadedExecutor

        if localhost_only:  # read by rcl when the context starts
            os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
        self._rclpy = rclpy
        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=domain_id)
        self.node = rclpy.create_node(name, context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self._clients: dict[tuple[str, str], Any] = {}

    def _client(self, node: str, service: str) -> Any:
        from lifecycle_msgs.srv import ChangeState, GetState

        key = (node, service)
        if key not in self._clients:
            srv_type = ChangeState if service == "change_state" else GetState
            self._clients[key] = self.node.create_client(srv_type, f"{node}/{service}")
        return self._clients[key]

    def _call(self, node: str, service: str, request: Any, timeout_s: float) -> Any:
        client = self._client(node, service)
        t_end = time.monotonic() + timeout_s
        while not client.service_is_ready():
            if time.monotonic() > t_end:
                raise TimeoutError(f"{node}: lifecycle service {service} not available after "
                                   f"{timeout_s:g} s")
            self.executor.spin_once(timeout_sec=0.1)
        future = client.call_async(request)
        while not future.done():
            if time.monotonic() > t_end:
                raise TimeoutError(f"{node}: {service} got no answer in {timeout_s:g} s")
            self.executor.spin_once(timeout_sec=0.1)
        return future.result()

    def wait_for(self, node: str, timeout_s: float = 30.0) -> bool:
        """True once ``node``'s lifecycle services are reachable (False after the timeout)."""
        try:
            self.get_state(node, timeout_s)
        except TimeoutError:
            return False
        return True

    def get_state(self, node: str, timeout_s: float = 10.0) -> str:
        """Label of the node's current state (``unconfigured``, ``inactive``, ``active``...)."""
        from lifecycle_msgs.srv import GetState

        return str(self._call(node, "get_state", GetState.Request(), timeout_s).current_state.label)

    def change(self, node: str, transition: str, timeout_s: float = 120.0) -> bool:
        """Ask for ``transition`` (one of :data:`TRANSITIONS`); True when it succeeded.

        Raises:
            ValueError: unknown transition name.
            TimeoutError: the node's service is unreachable or does not answer in time.
        """
        from lifecycle_msgs.msg import Transition
        from lifecycle_msgs.srv import ChangeState

        ids = {"configure": Transition.TRANSITION_CONFIGURE,
               "activate": Transition.TRANSITION_ACTIVATE,
               "deactivate": Transition.TRANSITION_DEACTIVATE,
               "cleanup": Transition.TRANSITION_CLEANUP}
        if transition == "shutdown":  # one shutdown transition per primary state
            state = self.get_state(node, timeout_s)
            ids["shutdown"] = {"unconfigured": Transition.TRANSITION_UNCONFIGURED_SHUTDOWN,
                               "inactive": Transition.TRANSITION_INACTIVE_SHUTDOWN,
                               "active": Transition.TRANSITION_ACTIVE_SHUTDOWN}.get(state, -1)
        if transition not in ids:
            raise ValueError(f"unknown transition {transition!r}: expected one of {TRANSITIONS}")
        request = ChangeState.Request()
        request.transition.id = ids[transition]
        return bool(self._call(node, "change_state", request, timeout_s).success)

    def close(self) -> None:
        """Destroy the client node and shut its context down."""
        self.executor.shutdown()
        self.node.destroy_node()
        if self.context.ok():
            self._rclpy.shutdown(context=self.context)

    def __enter__(self) -> LifecycleClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def bring_up(client: LifecycleClient, nodes: list[str], wait_for_model: bool = False,
             check: Callable[[], None] | None = None, timeout_s: float = 600.0,
             retry_period_s: float = 1.0) -> None:
    """configure + activate each managed node in order (what a lifecycle manager does).

    Args:
        client: the lifecycle client.
        nodes: fully qualified node names (``/sar/scene_detector``).
        wait_for_model: retry a failed configure every ``retry_period_s`` (a model file
            still to come) instead of failing.
        check: called while waiting; raises to abort (e.g. a node process died).
        timeout_s: give up after this long in all.

    Raises:
        LifecycleError: a node refused configure (not waiting) or activate.
        TimeoutError: a node's lifecycle services never came up, or waiting ran out.
    """
    t_end = time.monotonic() + timeout_s

    def left() -> float:
        remaining = t_end - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"lifecycle bring-up of {nodes} took over {timeout_s:g} s")
        return remaining

    for node in nodes:
        while not client.wait_for(node, min(1.0, left())):
            if check is not None:
                check()
        while not client.change(node, "configure", left()):
            if not wait_for_model:
                raise LifecycleError(f"{node}: configure failed")
            if check is not None:
                check()
            time.sleep(min(retry_period_s, left()))
        if not client.change(node, "activate", left()):
            raise LifecycleError(f"{node}: activate failed")
