"""``sar-atd eval-suite``: every detector over the four test sets, one report."""
