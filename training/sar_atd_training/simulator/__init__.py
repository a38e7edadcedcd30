"""Physics-based SAR signature simulator (stand-in for MOCEM) and the signature bank.

``simulate_signature(class_name, azimuth_deg, depression_deg, seed, articulation=None)``
returns ``(signature complex64 (128, 128), shadow bool, support bool)``; see
:mod:`~sar_atd_training.simulator.signature` for conventions, :mod:`.models` for the
target models, :mod:`.scattering` for the mechanisms and :mod:`.bank` for the bank.
"""

from sar_atd_training.simulator.signature import (
                                                  CHIP_SHAPE,
                                                  MECHANISMS,
                                                  RenderResult,
                                                  SceneObject,
                                                  render_object,
                                                  scene_object,
                                                  simulate_signature,
)

__all__ = ["CHIP_SHAPE", "MECHANISMS", "RenderResult", "SceneObject", "render_object",
           "scene_object", "simulate_signature"]
