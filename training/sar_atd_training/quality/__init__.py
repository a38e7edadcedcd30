"""Detection quality on real data: box definitions and measurements against SARBake masks
(:mod:`.boxes`), diagnosis of matched boxes on real patchworks (:mod:`.diagnosis`), and
re-renderings of 8-bit chips for rendering-robustness checks (:mod:`.renderings`)."""
