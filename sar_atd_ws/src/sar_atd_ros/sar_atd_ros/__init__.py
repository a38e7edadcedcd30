"""SAR-ATD ROS 2 nodes and bag tools: thin wrappers over the ``sar_atd`` core library.

Nodes (console scripts, ``python -m sar_atd_ros.<module>``, ``ros2 run sar_atd_ros <name>``):
``scene_player``, ``scene_detector`` (tiler + detector in one process, the default),
``tiler``, ``detector``, ``evaluator``. ``sar_atd_ros.bag`` writes and summarises SAR bags
with ``rosbags``; ``sar_atd_ros.runner`` starts the graph as separate processes.
"""
