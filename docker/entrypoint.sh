#!/usr/bin/env bash
# Container entry point of the SAR-ATD images: sources ROS 2 and the SAR-ATD workspace,
# puts the image's virtual environment first on PATH, keeps DDS discovery on this host
# unless told otherwise, then runs the given command (default: the launch file).
set -euo pipefail

# ROS setup files read unset variables; source them without -u.
set +u
# shellcheck disable=SC1090
source "/opt/ros/${ROS_DISTRO:?ROS_DISTRO is not set}/setup.bash"
# shellcheck disable=SC1091
source /opt/sar_atd/install/setup.bash
set -u

export PATH="/opt/venv/bin:${PATH}"
# Discovery stays inside the container's host unless the caller sets these: Jazzy and later
# read ROS_AUTOMATIC_DISCOVERY_RANGE, Humble reads ROS_LOCALHOST_ONLY.
export ROS_AUTOMATIC_DISCOVERY_RANGE="${ROS_AUTOMATIC_DISCOVERY_RANGE:-LOCALHOST}"
if [[ "${ROS_DISTRO}" == "humble" ]]; then
    export ROS_LOCALHOST_ONLY="${ROS_LOCALHOST_ONLY:-1}"
fi
export ROS_DOMAIN_ID="${ROS_DOMAIN_ID:-0}"

if [[ $# -eq 0 ]]; then
    set -- ros2 launch sar_atd_ros sar_atd.launch.py
fi
exec "$@"
