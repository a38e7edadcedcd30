"""Background clutter: synthetic MSTAR-like scenes and loaders for real backgrounds."""

from sar_atd_training.clutter.backgrounds import BackgroundSet, load_background
from sar_atd_training.clutter.generator import (
    MSTAR_CLUTTER_SHAPE,
    BuildingsConfig,
    ClutterConfig,
    ClutterStatisticsError,
    FieldsConfig,
    PointsConfig,
    RoadsConfig,
    TreesConfig,
    cast_shadows,
    check_scene_statistics,
    generate_scene,
)

__all__ = [
    "MSTAR_CLUTTER_SHAPE", "BackgroundSet", "BuildingsConfig", "ClutterConfig",
    "ClutterStatisticsError", "FieldsConfig", "PointsConfig", "RoadsConfig", "TreesConfig",
    "cast_shadows", "check_scene_statistics", "generate_scene",
    "load_background",
]
