"""Transfer learning: ImageNet weights for source networks (sources) and cutting, copying and freezing a net's stages (stages)."""

from .sources import SOURCES, ImageNetSource, Pretrained, load_pretrained, source_spec
from .stages import check_cut, copy_stages, freeze_stages, max_cut, stages_of

__all__ = ["SOURCES", "ImageNetSource", "Pretrained", "check_cut", "copy_stages", "freeze_stages", "load_pretrained", "max_cut", "source_spec",
           "stages_of"]
