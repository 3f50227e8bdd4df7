"""From an image and coarse borders to a Measurement (CONTRACT.md): sub-pixel edge fits, the 24 points, centering,
skew, uncertainty and quality flags; classical border detectors; grading tables; overlay and report rendering."""
