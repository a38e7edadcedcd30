"""ament_python build of the core library (colcon). pip users install the repository root."""

from setuptools import find_packages, setup

package_name = "sar_atd"

setup(
    name=package_name,
    version="0.1.0",
    packages=find_packages(include=["sar_atd", "sar_atd.*"]),
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/" + package_name]),
        ("share/" + package_name, ["package.xml"]),
    ],
    install_requires=["setuptools", "numpy", "scipy", "pyyaml"],
    zip_safe=True,
    maintainer="SAR-ATD developers",
    description="SAR-ATD core library (no ROS imports)",
    license="Apache-2.0",
)
