"""cardmetry: measure and grade trading-card centering; train the models that find card borders."""

__version__ = "0.1.0"
