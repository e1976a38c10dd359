"""Maintenance tools run as modules (python -m layerlab.tools.NAME)."""
