"""The LayerLab window (PySide6): thin widgets over ``layerlab.core`` and the worker."""
