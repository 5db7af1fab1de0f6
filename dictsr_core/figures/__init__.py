"""Figures the notebooks show: each function returns a matplotlib Figure and never calls show()."""

from dictsr_core.figures.comparison import degradation_gallery, sr_comparison
from dictsr_core.figures.style import METHOD_COLORS, method_color, method_label, save_figure

__all__ = ["degradation_gallery", "sr_comparison", "METHOD_COLORS", "method_color", "method_label", "save_figure"]
