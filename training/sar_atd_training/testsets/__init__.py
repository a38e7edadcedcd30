"""The paper's four test sets (section II.C): real targets in backgrounds (segmenter
cut-outs), synthetic targets in backgrounds, patchworks of real chips, OOD objects."""
