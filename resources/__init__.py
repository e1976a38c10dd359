"""LayerLab's bundled files, installed as the package ``layerlab.resources``.

Read them through ``layerlab.core.resources`` (it also works from a source checkout).
"""
