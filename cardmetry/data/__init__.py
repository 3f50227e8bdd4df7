"""Datasets: labelled images, format readers and writers, validation, splits, stats, the synthetic renderer and
box-to-polygon refinement. No torch here."""
