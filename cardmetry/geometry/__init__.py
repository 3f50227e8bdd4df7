"""Pure geometry: card specs and stations, homographies, quads, sub-pixel edges, robust line fits.

No I/O and no torch here: every function takes arrays and returns arrays or small dataclasses.
"""
