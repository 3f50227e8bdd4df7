"""The synthetic card renderer: the test oracle and a source of training data, with exact ground truth."""

from cardmetry.data.synth.render import Rendered, render
from cardmetry.data.synth.scene import Scene, sample_scene

__all__ = ["Rendered", "Scene", "render", "sample_scene"]
