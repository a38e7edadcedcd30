"""Detector trainer: typed recipe, FGSM adversarial training, exact resume, DDP, logs.

``sar-atd train detector --config training/configs/X.yaml [--resume] [--out runs/NAME]``.
Modules: :mod:`.config` (TrainConfig), :mod:`.data` (dataset registry, re-seedable stream),
:mod:`.fgsm`, :mod:`.engine` (train_one_epoch, evaluate), :mod:`.checkpoint`,
:mod:`.train` (get_args_parser, main, train), :mod:`.cli`.
"""
