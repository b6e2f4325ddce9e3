"""Wasted space per layer (ctrfs layers --json, the browse layers panel) on the multi-layer image."""

from __future__ import annotations

import json
import posixpath

from ctrfs.overlay.layers import layer_stack
from ctrfs.targets import resolve
from harness import MULTILAYER_LAYERS, RunningContainer, ctrfs


def _hidden_bytes() -> tuple[str, int]:
    """Bytes the test put in image layer 2 that layer 3 overwrites, deletes or hides under an
    opaque directory (tests/harness.py MULTILAYER_LAYERS)."""
    lower, upper = MULTILAYER_LAYERS[1], MULTILAYER_LAYERS[2]

    def hidden(path: str) -> bool:
        if path in upper["files"] or path in upper["whiteouts"]:
            return True
        return any(path.startswith(d.rstrip("/") + "/") for d in upper["opaque"] + upper["whiteouts"])

    total = sum(len(data) for path, data in lower["files"].items() if hidden(path))
    return lower["name"], total


def test_wasted_space_is_what_upper_layers_hide(docker_multilayer: RunningContainer) -> None:
    name, expected = _hidden_bytes()
    assert expected > 0
    stack = layer_stack(resolve(docker_multilayer.name), counts=True)
    # top first: upper, init, layer3, layer2, busybox
    images = [la for la in stack.layers if la.role == "image"]
    assert len(images) == len(MULTILAYER_LAYERS)
    by_name = dict(zip([m["name"] for m in reversed(MULTILAYER_LAYERS)], images, strict=True))
    assert by_name[name].wasted == expected
    assert all(la.wasted == 0 for la in stack.layers if la is not by_name[name])
    assert stack.wasted == expected
    data = stack.to_dict()
    assert data["wasted"] == expected
    assert [la["wasted"] for la in data["layers"]] == [la.wasted for la in stack.layers]
    assert posixpath.isabs(data["layers"][0]["path"])


def test_layers_json_reports_wasted_space(docker_multilayer: RunningContainer) -> None:
    _, expected = _hidden_bytes()
    data = json.loads(ctrfs("layers", "--json", docker_multilayer.name).stdout)
    assert data["wasted"] == expected
    assert sum(la["wasted"] for la in data["layers"]) == expected
