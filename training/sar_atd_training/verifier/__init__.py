"""Training of the second-stage target verifier (:mod:`sar_atd.verifier`) on synthetic data:
``sar-atd train verifier``."""
