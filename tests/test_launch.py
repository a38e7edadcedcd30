"""Launch file vs ``sar-atd run``, and the per-deployment parameter files.

``launch``/``launch_ros`` are not installable here, so the launch file is read as Python
source (its syntax tree), never executed through a stand-in of the launch API. From that
tree and the trees of the runner, ``setup.py`` and the node modules, the tests check that
the launch file and ``sar-atd run`` start the same executables (down to the same
``main`` function), set the same parameters for the same command-line choices, use the
same namespace, layouts and parameter files, and remap only topics the nodes subscribe to.
Every parameter file is loaded through the core's typed configs for every node section
the nodes declare, and started for real in a ``scene_detector`` node over rclpy.
"""

from __future__ import annotations

import ast
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "sar_atd_ws" / "src" / "sar_atd_ros"
LAUNCH = PKG / "launch" / "sar_atd.launch.py"
TOP_LAUNCH = ROOT / "launch" / "sar_atd.launch.py"
RUNNER = PKG / "sar_atd_ros" / "runner.py"
PARAMS = PKG / "params"
DEPLOYMENTS = ("default", "cpu", "desktop_gpu", "jetson_orin")
# Module holding each node class (its declare_section / declare_qos calls).
NODE_SECTIONS_MODULES = {
    "scene_player": "sar_atd_ros.scene_player",
    "scene_detector": "sar_atd_ros.detector_node",
    "tiler": "sar_atd_ros.tiler_node",
    "detector": "sar_atd_ros.detector_node",
    "evaluator": "sar_atd_ros.evaluator_node",
    "multi_scene_detector": "sar_atd_ros.multistream",
}
# Started by the launch file only: ``sar-atd run`` replays one bag into one stream.
LAUNCH_ONLY = {"multi_scene_detector"}

# Names of launch/launch_ros present in ROS 2 Humble (the oldest distribution the nodes
# support); the launch file may import nothing else from them.
HUMBLE_API = {
    "launch": {"LaunchContext", "LaunchDescription"},
    "launch.actions": {"DeclareLaunchArgument", "EmitEvent", "LogInfo", "OpaqueFunction",
                       "RegisterEventHandler", "SetEnvironmentVariable", "GroupAction",
                       "IncludeLaunchDescription", "TimerAction", "ExecuteProcess"},
    "launch.event_handlers": {"OnProcessExit", "OnProcessStart", "OnShutdown"},
    "launch.events": {"Shutdown", "matches_action"},
    "lifecycle_msgs.msg": {"Transition", "State"},
    "launch.substitutions": {"EnvironmentVariable", "LaunchConfiguration",
                             "PythonExpression", "TextSubstitution"},
    "launch_ros.actions": {"Node", "LifecycleNode", "PushRosNamespace"},
    "launch_ros.events.lifecycle": {"ChangeState"},
    "launch_ros.event_handlers": {"OnStateTransition"},
}


def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), filename=str(path))


def _assigned(tree: ast.Module, name: str) -> ast.expr:
    """Value of the module-level assignment to ``name``."""
    for node in tree.body:
        targets = (node.targets if isinstance(node, ast.Assign) else
                   [node.target] if isinstance(node, ast.AnnAssign) else [])
        if any(isinstance(t, ast.Name) and t.id == name for t in targets):
            assert node.value is not None
            return node.value
    raise AssertionError(f"no module-level assignment to {name}")


def _calls(tree: ast.AST, func: str) -> list[ast.Call]:
    return [n for n in ast.walk(tree) if isinstance(n, ast.Call)
            and ((isinstance(n.func, ast.Name) and n.func.id == func)
                 or (isinstance(n.func, ast.Attribute) and n.func.attr == func))]


def _const(node: ast.AST) -> Any:
    return node.value if isinstance(node, ast.Constant) else None


# ----------------------------------------------------------------------------- launch file
def _launch_arguments() -> dict[str, Any]:
    """Launch argument name -> default (a string, or None for a substitution)."""
    out = {}
    for elt in _assigned(_tree(LAUNCH), "ARGUMENTS").elts:  # type: ignore[attr-defined]
        out[_const(elt.elts[0])] = _const(elt.elts[1])
    return out


def _node_calls(tree: ast.AST) -> list[ast.Call]:
    """Calls of the launch file's functions that start an executable (plain or managed)."""
    return [c for f in ("node", "managed") for c in _calls(tree, f) if c.args]


def _launch_executables() -> set[str]:
    tree = _tree(LAUNCH)
    execs = {_const(c.args[0]) for c in _node_calls(tree)}
    layouts = ast.literal_eval(_assigned(tree, "LAYOUTS"))
    return execs | {e for v in layouts.values() for e in v}


def _launch_overrides() -> dict[str, set[str]]:
    """Override dict variable -> parameter names it sets (dict literals + item stores)."""
    tree = _tree(LAUNCH)
    out: dict[str, set[str]] = {}
    for node in ast.walk(tree):
        if isinstance(node, (ast.Assign, ast.AnnAssign)) and isinstance(node.value, ast.Dict):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for t in targets:
                if isinstance(t, ast.Name) and t.id.endswith("_over"):
                    out.setdefault(t.id, set()).update(
                        _const(k) for k in node.value.keys if _const(k))
        if isinstance(node, ast.Assign):
            for t in node.targets:
                if (isinstance(t, ast.Subscript) and isinstance(t.value, ast.Name)
                        and t.value.id.endswith("_over") and _const(t.slice)):
                    out.setdefault(t.value.id, set()).add(_const(t.slice))
    return out


def _launch_node_overrides() -> dict[str, set[str]]:
    """Executable -> parameter names the launch file overrides for it."""
    tree = _tree(LAUNCH)
    over = _launch_overrides()
    out: dict[str, set[str]] = {}
    for call in _node_calls(tree):
        exe, arg = _const(call.args[0]), call.args[1]
        names: set[str] = set()
        for sub in ast.walk(arg):
            if isinstance(sub, ast.Name) and sub.id in over:
                names |= over[sub.id]
        out.setdefault(exe, set()).update(names)
    return out


# ----------------------------------------------------------------------------- runner
def _runner_puts() -> dict[str, set[str]]:
    """Node (or ``<detector side>``) -> ``section.key`` names ``sar-atd run`` sets."""
    out: dict[str, set[str]] = {}
    for call in _calls(_tree(RUNNER), "put"):
        node, section, key = (call.args + [None] * 3)[:3]
        if _const(section) is None or _const(key) is None:
            continue
        who = _const(node) if _const(node) else "<detector side>"
        out.setdefault(who, set()).add(f"{_const(section)}.{_const(key)}")
    return out


def _setup_entry_points() -> dict[str, str]:
    for call in _calls(_tree(PKG / "setup.py"), "setup"):
        for kw in call.keywords:
            if kw.arg == "entry_points":
                scripts = ast.literal_eval(kw.value)["console_scripts"]
                return {s.split("=")[0].strip(): s.split("=")[1].strip() for s in scripts}
    raise AssertionError("setup.py has no console_scripts")


def _module_main(module: str) -> str:
    """``module:function`` that ``python -m module`` runs (through one import)."""
    path = PKG / Path(*module.split(".")).with_suffix(".py")
    tree = _tree(path)
    for node in tree.body:
        if isinstance(node, ast.If) and "__main__" in ast.unparse(node.test):
            call = next(c for c in ast.walk(node) if isinstance(c, ast.Call)
                        and isinstance(c.func, ast.Name) and c.func.id != "SystemExit")
            func = call.func.id  # type: ignore[attr-defined]
            for imp in tree.body:
                if isinstance(imp, ast.ImportFrom) and any(a.name == func for a in imp.names):
                    return f"{imp.module}:{func}"
            return f"{module}:{func}"
    raise AssertionError(f"{module} has no __main__ block")


def _node_declarations(module: str) -> tuple[dict[str, str], set[str], set[str]]:
    """(section -> config class name, QoS topics, subscribed topics) of a node module,
    including what the node classes inherit within that module."""
    tree = _tree(PKG / Path(*module.split(".")).with_suffix(".py"))
    sections: dict[str, str] = {}
    inherited: set[str] = set()
    if module != "sar_atd_ros.detector_node" and any(
            isinstance(n, ast.ImportFrom) and n.module == "sar_atd_ros.detector_node"
            and any(a.name == "_DetectorBase" for a in n.names) for n in tree.body):
        sections, inherited, _subs = _node_declarations("sar_atd_ros.detector_node")
    for call in _calls(tree, "declare_section"):
        sections[_const(call.args[2])] = ast.unparse(call.args[1])
    for node in ast.walk(tree):  # EXTRA_SECTIONS = ((ConfigClass, "section"), ...)
        if (isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id ==
                                                 "EXTRA_SECTIONS" for t in node.targets)
                and isinstance(node.value, ast.Tuple)):
            for elt in node.value.elts:
                sections[_const(elt.elts[1])] = ast.unparse(elt.elts[0])
    class_consts: dict[str, set[str]] = {}  # e.g. INPUT = "scene" in node classes
    for cls in (n for n in tree.body if isinstance(n, ast.ClassDef)):
        for stmt in cls.body:
            if isinstance(stmt, ast.Assign) and isinstance(_const(stmt.value), str):
                for target in stmt.targets:
                    if isinstance(target, ast.Name):
                        class_consts.setdefault(target.id, set()).add(_const(stmt.value))
    qos: set[str] = set(inherited)
    for call in _calls(tree, "declare_qos"):
        for elt in call.args[1].elts if isinstance(call.args[1], ast.List) else []:
            if _const(elt):
                qos.add(_const(elt))
            elif isinstance(elt, ast.Attribute):
                qos |= class_consts.get(elt.attr, set())
            elif isinstance(elt, ast.Name):  # module constant such as STREAM_END_TOPIC
                qos.add(elt.id)
    subs = {_const(c.args[1]) for c in _calls(tree, "create_subscription") if _const(c.args[1])}
    return sections, qos, subs


def _config_class(module_name: str, cls_name: str) -> type:
    """A node's config class, from its module or the module it inherits sections from."""
    import importlib

    for name in (module_name, "sar_atd_ros.detector_node"):
        cls = getattr(importlib.import_module(name), cls_name, None)
        if cls is not None:
            return cls
    raise AssertionError(f"{module_name}: config class {cls_name} not found")


def _runner_node_modules() -> dict[str, str]:
    return ast.literal_eval(_assigned(_tree(RUNNER), "NODE_MODULES"))


# ----------------------------------------------------------------------------- tests
def test_top_level_launch_file_is_the_package_one() -> None:
    """``launch/sar_atd.launch.py`` is the installed package's file (one source)."""
    assert TOP_LAUNCH.resolve() == LAUNCH.resolve()
    setup = (PKG / "setup.py").read_text()
    assert 'glob("launch/*.py")' in setup and 'glob("params/*.yaml")' in setup


def test_launch_uses_only_humble_api() -> None:
    """Every name imported from launch/launch_ros exists from ROS 2 Humble on."""
    tree = _tree(LAUNCH)
    seen = 0
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in (
                "launch", "launch_ros", "lifecycle_msgs"):
            allowed = HUMBLE_API.get(node.module, set())
            for alias in node.names:
                assert alias.name in allowed, f"{node.module}.{alias.name} is not Humble API"
                seen += 1
        if isinstance(node, ast.Import):
            assert not any(a.name.split(".")[0] in ("launch", "launch_ros") for a in node.names)
    assert seen >= 5
    names = {ast.unparse(c.func) for c in ast.walk(tree) if isinstance(c, ast.Call)}
    assert {"Node", "DeclareLaunchArgument", "OpaqueFunction", "LaunchDescription"} <= names
    assert "generate_launch_description" in {
        n.name for n in tree.body if isinstance(n, ast.FunctionDef)}


def test_launch_arguments() -> None:
    """Bag (empty = live), model, backend, device, params, namespace, layout, respawn."""
    args = _launch_arguments()
    for name in ("bag", "scene_topic", "model", "backend", "device", "params_file",
                 "deployment", "namespace", "layout", "respawn", "report_dir", "mode",
                 "wait_for_model", "discovery_range"):
        assert name in args, name
    assert args["bag"] == "" and args["discovery_range"] == "LOCALHOST"


def test_same_executables_as_runner_and_setup() -> None:
    """Launch executables = runner nodes (less its bag recorder) = setup.py entry points,
    and ``python -m <runner module>`` runs the same function as the executable."""
    launch = _launch_executables()
    runner = _runner_node_modules()
    entry = _setup_entry_points()
    assert launch - LAUNCH_ONLY == set(runner) - {"recorder"}
    assert launch <= set(entry)
    for exe in launch:
        module = runner.get(exe) or NODE_SECTIONS_MODULES[exe]
        assert _module_main(module) == entry[exe], exe


def test_same_layouts_namespace_and_default_params() -> None:
    """Layouts, default namespace and the default parameter file agree with the runner."""
    launch_tree, runner_tree = _tree(LAUNCH), _tree(RUNNER)
    launch_layouts = ast.literal_eval(_assigned(launch_tree, "LAYOUTS"))
    runner_layouts = ast.literal_eval(_assigned(runner_tree, "LAYOUTS"))
    assert {k: list(v) for k, v in launch_layouts.items()} == runner_layouts
    opts = next(n for n in runner_tree.body if isinstance(n, ast.ClassDef)
                and n.name == "GraphOptions")
    defaults = {s.target.id: _const(s.value) for s in opts.body  # type: ignore[union-attr]
                if isinstance(s, ast.AnnAssign) and s.value is not None}
    args = _launch_arguments()
    assert args["namespace"] == defaults["namespace"]
    assert args["layout"] == defaults["layout"]
    # the launch file's parameter folder, evaluated for its real and its top-level path
    expr = ast.Expression(_assigned(launch_tree, "PARAMS_DIR"))
    for path in (LAUNCH, TOP_LAUNCH):
        params_dir = eval(compile(expr, str(LAUNCH), "eval"),  # noqa: S307 - own source
                          {"Path": Path, "__file__": str(path)})
        assert params_dir == PARAMS
    from sar_atd_ros.runner import DEFAULT_PARAMS

    default_deployment = next(_const(c.keywords[0].value) for c in _calls(
        _assigned(launch_tree, "ARGUMENTS"), "EnvironmentVariable"))
    assert Path(DEFAULT_PARAMS) == PARAMS / f"{default_deployment}.yaml"


def test_same_parameters_for_the_same_choices() -> None:
    """What the launch file overrides per node is what ``sar-atd run`` sets for the same
    choice (bag, mode, model, backend, device, report folder, waiting for the model)."""
    launch = _launch_node_overrides()
    runner = _runner_puts()
    detector_side = runner["<detector side>"]
    for exe in ("scene_detector", "detector"):
        assert launch[exe] == detector_side, exe
    assert launch["tiler"] == runner["tiler"]
    # runner-only choices: speed factor, lossless pacing, the run's own report/exit
    assert launch["scene_player"] <= runner["scene_player"]
    assert runner["scene_player"] - launch["scene_player"] <= {"player.speed"}
    assert launch["evaluator"] == runner["evaluator"]


def test_overridden_parameters_are_declared_by_the_nodes() -> None:
    """Each parameter the launch file sets is a field of a section its node declares."""
    import dataclasses

    for exe, names in _launch_node_overrides().items():
        module_name = NODE_SECTIONS_MODULES[exe]
        sections, _qos, _subs = _node_declarations(module_name)
        for name in names:
            section, key = name.split(".")
            assert section in sections, f"{exe}: no section {section}"
            cls = _config_class(module_name, sections[section])
            fields = {f.name for f in dataclasses.fields(cls)}
            assert key in fields, f"{exe}: {name} is not a field of {cls.__name__}"


def test_remapped_topics_are_node_topics() -> None:
    """The live-input remap targets ``scene``, the topic the detector side subscribes to,
    and the runner and launch file both use relative topics under the namespace."""
    tree = _tree(LAUNCH)
    remaps = [n for n in ast.walk(tree) if isinstance(n, ast.Tuple)
              and len(n.elts) == 2 and _const(n.elts[0]) == "scene"]
    assert remaps, "no ('scene', ...) remapping for live input"
    _s, _q, subs_scene_detector = _node_declarations("sar_atd_ros.detector_node")
    _s, _q, subs_tiler = _node_declarations("sar_atd_ros.tiler_node")
    assert "scene" in subs_scene_detector and "scene" in subs_tiler
    text = RUNNER.read_text()
    assert '"__ns:={namespace}"' in text or "__ns:=" in text


# ----------------------------------------------------------------------------- params files
@pytest.mark.parametrize("deployment", DEPLOYMENTS)
def test_params_file_loads_through_typed_configs(deployment: str) -> None:
    """Every node block of every deployment file builds its typed configs (unknown keys
    and out-of-range values are errors), and names only sections/topics the node has."""

    from sar_atd.config import ROS_STANDARD_PARAMETERS, load_ros_params

    path = PARAMS / f"{deployment}.yaml"
    assert path.is_file(), path
    for node, module_name in NODE_SECTIONS_MODULES.items():
        params = load_ros_params(path, node)
        sections, qos_topics, _subs = _node_declarations(module_name)
        for section, value in params.items():
            if section in ROS_STANDARD_PARAMETERS:
                continue
            if section == "qos":
                assert set(value) <= qos_topics, f"{deployment}/{node}: qos {set(value)}"
                from sar_atd.config import from_dict
                from sar_atd_ros.common import QosConfig
                for topic, qos in value.items():
                    from_dict(QosConfig, qos, where=f"{deployment}/{node}:qos.{topic}")
                continue
            assert section in sections, f"{deployment}/{node}: unknown section {section}"
            cls = _config_class(module_name, sections[section])
            if hasattr(cls, "from_params"):
                cls.from_params(params, section)
            else:
                from sar_atd.config import from_dict
                from_dict(cls, value, where=f"{deployment}/{node}:{section}")


def test_deployment_files_differ_where_the_platform_does() -> None:
    """cpu runs on the CPU, desktop_gpu and jetson_orin run on CUDA with backend auto
    (TensorRT first, ONNX Runtime where TensorRT is missing), Jetson keeps
    smaller batches and a smaller scene limit than the desktop."""
    from sar_atd.config import DetectorRuntimeConfig, TilerConfig, load_ros_params

    cfg = {d: load_ros_params(PARAMS / f"{d}.yaml", "scene_detector")
           for d in ("cpu", "desktop_gpu", "jetson_orin")}
    det = {d: DetectorRuntimeConfig.from_params(p) for d, p in cfg.items()}
    til = {d: TilerConfig.from_params(p) for d, p in cfg.items()}
    assert det["cpu"].device == til["cpu"].device == "cpu"
    for d in ("desktop_gpu", "jetson_orin"):
        assert det[d].backend == "auto" and det[d].device == til[d].device == "cuda"
        assert det[d].model.endswith(".onnx")
    assert til["jetson_orin"].batch_size < til["desktop_gpu"].batch_size
    assert (cfg["jetson_orin"]["node"]["max_scene_pixels"]
            < cfg["desktop_gpu"]["node"]["max_scene_pixels"])


def _start_node(params: Path, extra: list[str], env: dict[str, str]) -> subprocess.Popen:
    from sar_atd_ros.runner import node_command

    cmd = node_command("scene_detector", params) + extra
    return subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


@pytest.mark.slow
def test_deployment_files_start_a_real_node() -> None:
    """A real scene_detector (rclpy) starts on the deployment files: the cpu file with its
    own model (the committed weights on torch), a GPU file with its CUDA choices replaced
    by CPU + CFAR (no GPU here) so every other key is validated by the node itself."""
    pytest.importorskip("rclpy", reason="ROS 2 Python wheels not installed (make install)")
    pytest.importorskip("sar_atd_msgs", reason="sar_atd_msgs not built (make install)")
    from sar_atd_ros.runner import ros_env

    env = ros_env()
    procs = {}
    for deployment in ("cpu", "jetson_orin"):  # the GPU files share one layout of keys
        extra = []
        if deployment != "cpu":
            extra = ["-p", "detector.model:=cfar", "-p", "detector.backend:=''",
                     "-p", "detector.device:=cpu", "-p", "tiler.device:=cpu"]
        procs[deployment] = _start_node(PARAMS / f"{deployment}.yaml", extra, env)
    try:
        for deployment, proc in procs.items():
            t_end = time.monotonic() + 120
            lines = []
            assert proc.stdout is not None
            os.set_blocking(proc.stdout.fileno(), False)
            while time.monotonic() < t_end:
                line = proc.stdout.readline()
                if line:
                    lines.append(line)
                    if "backend" in line and "device" in line:
                        break
                elif proc.poll() is not None:
                    break
                else:
                    time.sleep(0.1)
            assert proc.poll() is None, f"{deployment}: node exited {proc.returncode}: {lines}"
            assert any("backend" in ln for ln in lines), f"{deployment}: {lines}"
            if deployment == "cpu":
                assert any("backend torch" in ln for ln in lines), lines
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
        for proc in procs.values():
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def test_params_files_are_installed_with_the_package() -> None:
    """setup.py installs params/*.yaml and launch/*.py into the package share folder."""
    scripts = _setup_entry_points()
    assert {"scene_player", "scene_detector", "tiler", "detector", "evaluator"} <= set(scripts)
    for name in DEPLOYMENTS:
        assert (PARAMS / f"{name}.yaml").is_file()


def test_launch_drives_the_detector_lifecycle() -> None:
    """The detector side starts as a lifecycle node without autostart; the launch file
    emits configure when its process starts, activate once it is inactive, and handles a
    failed configure (retry or stop)."""
    tree = _tree(LAUNCH)
    assert _calls(tree, "LifecycleNode")
    assert "node.autostart" in _launch_overrides()["detector_over"]
    transitions = {ast.unparse(c.keywords[1].value) for c in _calls(tree, "ChangeState")
                   if len(c.keywords) > 1} | {ast.unparse(a) for c in _calls(tree, "transition")
                                              for a in c.args}
    assert {"Transition.TRANSITION_CONFIGURE", "Transition.TRANSITION_ACTIVATE"} <= transitions
    edges = {(_const(k.value) if k.arg == "start_state" else None) for c in _calls(
        tree, "OnStateTransition") for k in c.keywords if k.arg == "start_state"}
    goals = {_const(k.value) for c in _calls(tree, "OnStateTransition") for k in c.keywords
             if k.arg == "goal_state"}
    assert edges == {"configuring"} and goals == {"inactive", "unconfigured"}
    assert _calls(tree, "OnProcessStart"), "configure is not re-emitted for a respawn"


def test_respawn_covers_the_nodes_sar_atd_run_restarts() -> None:
    """Every long-running node the launch file starts is respawned (when ``respawn:=true``)
    with the runner's restart delay, exactly the nodes ``sar-atd run --restarts`` restarts
    (plus the launch-only multi-stream detector); the player is not respawned; a clean
    evaluator exit ends the launch, a crash does not."""
    tree, runner_tree = _tree(LAUNCH), _tree(RUNNER)
    restartable = set(ast.literal_eval(_assigned(runner_tree, "RESTARTABLE")))
    delay = ast.literal_eval(_assigned(runner_tree, "RESTART_DELAY_S"))
    assert ast.literal_eval(_assigned(tree, "RESPAWN_DELAY_S")) == delay > 0
    respawned, plain = set(), set()
    for call in _node_calls(tree):
        kw = {k.arg: ast.unparse(k.value) for k in call.keywords}
        exe = _const(call.args[0])
        if "respawn" in kw:
            assert kw["respawn"] == "respawn", (exe, kw)  # the launch argument
            assert kw.get("respawn_delay") == "RESPAWN_DELAY_S", (exe, kw)
            respawned.add(exe)
        else:
            plain.add(exe)
    assert respawned == restartable | LAUNCH_ONLY
    assert plain == {"scene_player"}
    # the evaluator's exit handler: shutdown on a clean exit, respawn otherwise
    handler = next(c for c in _calls(tree, "OnProcessExit")
                   if any(ast.unparse(k.value) == "evaluator" for k in c.keywords))
    on_exit = next(k.value for k in handler.keywords if k.arg == "on_exit")
    assert isinstance(on_exit, ast.Name)
    func = next(n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)
                and n.name == on_exit.id)
    source = ast.unparse(func)
    assert "event.returncode == 0" in source and "Shutdown" in source
    assert "RESTART_DELAY_S" in ast.unparse(next(
        n for n in ast.walk(runner_tree) if isinstance(n, ast.FunctionDef)
        and n.name == "run_graph"))


@pytest.mark.parametrize("deployment", DEPLOYMENTS)
def test_rendering_is_the_same_in_every_node_and_as_default(deployment: str) -> None:
    """Every tiler section of a deployment file renders scenes as default.yaml's
    scene_detector does (same LUT rule in both layouts and on every platform)."""
    from sar_atd.config import TilerConfig, load_ros_params

    keys = ("render", "gamma", "amplitude_ref", "ref_quantile", "ref_level")
    ref = TilerConfig.from_params(load_ros_params(PARAMS / "default.yaml", "scene_detector"))
    for node in ("scene_detector", "tiler", "detector", "multi_scene_detector"):
        cfg = TilerConfig.from_params(load_ros_params(PARAMS / f"{deployment}.yaml", node))
        assert [getattr(cfg, k) for k in keys] == [getattr(ref, k) for k in keys], node


def test_default_rendering_is_the_default_model_record() -> None:
    """The parameter files render float scenes exactly as models/default.pt records, so the
    node graph and ``sar-atd detect`` / ``eval --tile`` (which follow the model file) agree."""
    from sar_atd.config import TilerConfig, load_ros_params
    from sar_atd.runtime import resolve_detector

    model = Path(__file__).resolve().parents[1] / "models" / "default.pt"
    info = resolve_detector(str(model))[1]["model_info"]
    cfg = TilerConfig.from_params(load_ros_params(PARAMS / "default.yaml", "scene_detector"))
    assert cfg.render == "config"
    for key, value in info["render"].items():
        assert getattr(cfg, key) == pytest.approx(value), key
