"""``sar-atd run`` parameter composition (no processes): the command line lands in the right
node blocks, parameter-file keys in any spelling name their node, environments stay local."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from sar_atd_ros.runner import (
    DEFAULT_PARAMS,
    GraphOptions,
    effective_params,
    node_key,
    node_params,
    ros_env,
)


def test_node_key_accepts_every_spelling() -> None:
    assert {node_key(k) for k in ("evaluator", "/evaluator", "/sar/evaluator",
                                  "/**/evaluator")} == {"evaluator"}


def test_command_line_overrides_reach_their_nodes(tmp_path: Path) -> None:
    opts = GraphOptions(bag=tmp_path / "bag", detector="cfar", backend="onnxruntime",
                        mode="speed", speed=2.0, record=tmp_path / "rec",
                        overrides={"evaluator": {"report": {"n_examples": 0}}})
    nodes = ["evaluator", "scene_detector", "recorder", "scene_player"]
    p = effective_params(opts, nodes, tmp_path / "report")
    assert set(p) == {f"/**/{n}" for n in nodes}
    player = p["/**/scene_player"]["ros__parameters"]["player"]
    assert player["bag"] == str(tmp_path / "bag") and player["mode"] == "speed"
    assert player["speed"] == 2.0 and player["wait_detections_publishers"] == 1
    det = p["/**/scene_detector"]["ros__parameters"]["detector"]
    assert det["model"] == "cfar" and det["backend"] == "onnxruntime"
    ev = p["/**/evaluator"]["ros__parameters"]
    assert ev["report"]["dir"] == str(tmp_path / "report") and ev["report"]["n_examples"] == 0
    assert p["/**/recorder"]["ros__parameters"]["recorder"]["out"] == str(tmp_path / "rec")
    yaml.safe_dump(p)  # a valid parameter file


def test_default_model_path_resolves_and_typed_configs_load() -> None:
    from sar_atd.config import DetectorRuntimeConfig, TilerConfig

    p = effective_params(GraphOptions(bag=Path("b")), ["scene_detector"], Path("r"))
    model = p["/**/scene_detector"]["ros__parameters"]["detector"]["model"]
    assert Path(model).is_file(), model  # models/default.pt of this checkout
    params = node_params(DEFAULT_PARAMS, "scene_detector")
    assert TilerConfig.from_params(params).render == "config"
    assert DetectorRuntimeConfig.from_params(params).model == "models/default.pt"


def test_ros_env_is_host_only_with_a_fresh_domain() -> None:
    env = ros_env()
    assert env["ROS_AUTOMATIC_DISCOVERY_RANGE"] == "LOCALHOST"
    assert 1 <= int(env["ROS_DOMAIN_ID"]) <= 232
    assert ros_env(domain_id=7)["ROS_DOMAIN_ID"] == "7"


def test_run_refuses_missing_inputs(tmp_path: Path) -> None:
    from sar_atd_ros.runner import run_graph

    with pytest.raises(FileNotFoundError, match="bag not found"):
        run_graph(GraphOptions(bag=tmp_path / "missing"))
    (tmp_path / "bag").mkdir()
    with pytest.raises(FileNotFoundError, match="parameter file not found"):
        run_graph(GraphOptions(bag=tmp_path / "bag", params=tmp_path / "p.yaml"))
