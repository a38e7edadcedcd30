"""SAR-ATD offline tools: simulator, clutter, overlay pipeline, test sets, training, export.

Imports the core library ``sar_atd``; never imported by it.
"""
