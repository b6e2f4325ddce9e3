"""Overlay layers: the layer stack, docker-diff semantics, which-layer, offline merge."""

from ctrfs.overlay.diff import Change, changes, diff
from ctrfs.overlay.layers import Layer, LayerStack, layer_stack

__all__ = ["Change", "Layer", "LayerStack", "changes", "diff", "layer_stack"]
