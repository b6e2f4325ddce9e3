"""Overlay layers: the layer stack (layers.py), the offline merge (merge.py, root.py), diff and which.

Nothing is imported here, so that a module of this package costs only what it imports itself.
"""
