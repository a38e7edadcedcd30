#!/usr/bin/env python3
"""Build the ``sar_atd_msgs`` interface package with colcon into a Python environment.

On a ROS 2 install, ``colcon build`` in ``sar_atd_ws`` does this as usual. In a plain
virtual environment holding the ROS 2 PyPI wheels (``ros-rclpy``, ``ros-rosidl-default-
generators``, ...), two things differ, and this script handles both:

* the wheels' exported CMake files name the include folders of the interpreter the wheels
  were built with (e.g. ``/opt/python/cp311-cp311/include/python3.11`` and its numpy);
  CMake refuses imported targets with missing include folders, so those paths are mapped
  to this interpreter's own (rewriting the wheel's CMake files in the environment, once);
* the package is installed into the environment's own prefix (``--merge-install``), where
  the wheels' libraries, Python packages and ament index already live, so the generated
  ``sar_atd_msgs`` module imports from that environment without sourcing any setup file.

Usage: ``python build_msgs.py [--prefix PREFIX] [--workspace WS]`` (defaults: this
interpreter's prefix, the ``sar_atd_ws`` folder holding this script's package).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

HERE = Path(__file__).resolve()
WORKSPACE = HERE.parents[3]  # sar_atd_ws/src/sar_atd_ros/scripts/build_msgs.py
FOREIGN_INCLUDE = re.compile(r"/opt/python/cp3\d+-cp3\d+/include/python3\.\d+")
FOREIGN_NUMPY = re.compile(
    r"/opt/python/cp3\d+-cp3\d+/lib/python3\.\d+/site-packages/numpy/(?:_core|core)/include")


def map_foreign_paths(prefix: Path) -> int:
    """Point the wheels' CMake exports at this interpreter's include folders.

    Returns:
        Number of files rewritten (0 when already mapped or built locally).
    """
    import numpy

    py_include = sysconfig.get_paths()["include"]
    np_include = numpy.get_include()
    changed = 0
    for path in sorted((prefix / "share").glob("*/cmake/*.cmake")):
        text = path.read_text(errors="replace")
        if "/opt/python/" not in text:
            continue
        new = FOREIGN_NUMPY.sub(np_include, text)
        new = FOREIGN_INCLUDE.sub(py_include, new)
        if new != text:
            path.write_text(new)
            changed += 1
    return changed


def build(prefix: Path, workspace: Path) -> None:
    """Run colcon on ``sar_atd_msgs``, installing into ``prefix``.

    Raises:
        SystemExit: naming the failing step (colcon's log folder holds the details).
    """
    colcon = shutil.which("colcon", path=str(prefix / "bin")) or shutil.which("colcon")
    if colcon is None:
        raise SystemExit("build_msgs: colcon not found (pip install colcon-core colcon-ros "
                         "colcon-cmake)")
    env = dict(os.environ)
    env["PATH"] = f"{prefix / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    for var in ("AMENT_PREFIX_PATH", "CMAKE_PREFIX_PATH"):
        parts = [p for p in env.get(var, "").split(os.pathsep) if p]
        env[var] = os.pathsep.join([str(prefix), *[p for p in parts if p != str(prefix)]])
    cmd = [colcon, "--log-base", str(workspace / "log"), "build", "--merge-install",
           "--base-paths", str(workspace / "src" / "sar_atd_msgs"),
           "--build-base", str(workspace / "build"), "--install-base", str(prefix),
           "--cmake-args", f"-DPython3_EXECUTABLE={sys.executable}", "-DBUILD_TESTING=OFF"]
    proc = subprocess.run(cmd, env=env, cwd=workspace, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-30:])
        raise SystemExit(f"build_msgs: colcon build of sar_atd_msgs failed:\n{tail}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prefix", type=Path, default=Path(sys.prefix))
    parser.add_argument("--workspace", type=Path, default=WORKSPACE)
    args = parser.parse_args(argv)
    n = map_foreign_paths(args.prefix)
    if n:
        print(f"build_msgs: mapped foreign include paths in {n} CMake file(s)", flush=True)
    build(args.prefix.resolve(), args.workspace.resolve())
    print(f"build_msgs: sar_atd_msgs installed into {args.prefix}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
