"""SAR sensor model, magnitude LUT and file I/O (MSTAR files, 8-bit chips, SARBake masks)."""
