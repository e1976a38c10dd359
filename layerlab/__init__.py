"""LayerLab: see what neural-network layers do to an image."""

__version__ = "0.1.0"
