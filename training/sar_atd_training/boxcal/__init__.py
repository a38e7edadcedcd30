"""Class-aware box calibration (:mod:`sar_atd.box_calibration`): the vehicle-class classifier
trained on synthetic data, the per-class side offsets fitted on real calibration patchworks,
``sar-atd train box-calibrator``."""
