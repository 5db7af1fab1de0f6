"""Figures the notebooks show: each function returns a matplotlib Figure and never calls show()."""

from dictsr_core.analysis.figures.data import degradation_gallery
from dictsr_core.analysis.figures.dictionaries import degradation_offsets_figure, dictionary_umap_figure, hr_atom_atlas_figure
from dictsr_core.analysis.figures.qualitative import choose_crops, crop_psnr, qualitative_figure
from dictsr_core.analysis.figures.style import METHOD_COLORS, method_color, method_label, save_figure

__all__ = ["degradation_gallery", "dictionary_umap_figure", "degradation_offsets_figure",
           "hr_atom_atlas_figure", "METHOD_COLORS", "method_color", "method_label", "save_figure"]
__all__ += ["choose_crops", "crop_psnr", "qualitative_figure"]
