"""ament_python build of the SAR-ATD ROS 2 nodes (colcon). pip users install the repository
root, which maps this package too."""

from glob import glob

from setuptools import find_packages, setup

package_name = "sar_atd_ros"

setup(
    name=package_name,
    version="0.1.0",
    packages=find_packages(include=["sar_atd_ros", "sar_atd_ros.*"]),
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/" + package_name]),
        ("share/" + package_name, ["package.xml"]),
        ("share/" + package_name + "/params", glob("params/*.yaml")),
        ("share/" + package_name + "/launch", glob("launch/*.py")),
    ],
    install_requires=["setuptools", "numpy", "pyyaml", "rosbags"],
    zip_safe=True,
    maintainer="SAR-ATD developers",
    description="SAR-ATD ROS 2 nodes: scene player, tiler, detector, evaluator",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "scene_player = sar_atd_ros.scene_player:main",
            "scene_detector = sar_atd_ros.detector_node:main_scene_detector",
            "tiler = sar_atd_ros.tiler_node:main",
            "detector = sar_atd_ros.detector_node:main",
            "evaluator = sar_atd_ros.evaluator_node:main",
            "recorder = sar_atd_ros.recorder:main",
            "multi_scene_detector = sar_atd_ros.multistream:main",
        ],
    },
)
