"""Where things live: CARDMETRY_HOME with its content-addressed blobs and immutable dataset versions."""
