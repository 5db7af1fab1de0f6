"""degradation_gallery: one row per image, four panels, a non-blank PNG."""

import numpy as np
from PIL import Image
from skimage import data as skdata

from dictsr_core.analysis.figures import degradation_gallery


def test_gallery_has_four_panels_per_image_and_saves_a_non_blank_png(tmp_path):
    images = [skdata.astronaut()[:256, :256], skdata.coffee()[:200, :256]]
    figure = degradation_gallery(images, seed=0)
    assert len(figure.axes) == 8
    titles = [ax.get_title().split("\n")[0] for ax in figure.axes[:4]]
    assert titles[0] == "HR" and titles[2] == "aim LR" and titles[3] == "ntire LR"
    assert figure.axes[1].get_title().endswith("64x64")
    path = tmp_path / "gallery.png"
    figure.savefig(path, dpi=60)
    pixels = np.asarray(Image.open(path).convert("L"), dtype=np.float64)
    assert pixels.std() > 20  # real image content, not an empty canvas
