"""`--source sample`: the colour photos bundled in the scikit-image wheel (offline, seconds).

The split is fixed by hand so that each set is usable: the HR domain gets the four
largest natural scenes (the motorcycle stereo pair kept together), the LR domain the
three images that stay >= 64 px after x4 downscaling and are not needed elsewhere, and
validation the two remaining natural photos. No photo is tiled: every set is
disjoint by photo. Licence notes are those of the skimage.data docstrings.
"""

from __future__ import annotations

from dictsr_core.data.sources.records import SourceImage, SourcePlan

_PUBLIC_DOMAIN_NASA = "public domain (NASA; no known copyright restrictions)"

SAMPLE_SPLITS = {
    "train_hr": [
        ("astronaut", "astronaut", "NASA (Eileen Collins portrait, NASA Great Images)", _PUBLIC_DOMAIN_NASA, None),
        ("rocket", "rocket", "SpaceX (DSCOVR launch on Falcon 9)", "public domain (released by SpaceX)", None),
        ("motorcycle_left", "stereo_motorcycle:0", "Middlebury 2014 stereo benchmark (Scharstein et al.)",
         "no known copyright restrictions (as bundled by scikit-image)", "motorcycle"),
        ("motorcycle_right", "stereo_motorcycle:1", "Middlebury 2014 stereo benchmark (Scharstein et al.)",
         "no known copyright restrictions (as bundled by scikit-image)", "motorcycle"),
    ],
    "train_lr": [
        ("hubble_deep_field", "hubble_deep_field", "NASA / ESA (Hubble eXtreme Deep Field)", _PUBLIC_DOMAIN_NASA, None),
        ("retina", "retina", "Mikael Häggström (Wikimedia Commons)", "CC0-1.0", None),
        ("immunohistochemistry", "immunohistochemistry", "Center for Microscopy And Molecular Imaging (CMMI)",
         "no known copyright restrictions", None),
    ],
    "val": [
        ("chelsea", "chelsea", "Stéfan van der Walt", "CC0-1.0", None),
        ("coffee", "coffee", "Rachel Michetti (courtesy of Pikolo Espresso Bar)", "CC0-1.0", None),
    ],
}


def sample_plan() -> SourcePlan:
    """The fixed three-way split of the bundled skimage photos."""
    import skimage

    splits = {}
    for split, rows in SAMPLE_SPLITS.items():
        splits[split] = [
            SourceImage(name=name, loader="skimage", ref=ref,
                        origin={"library": "scikit-image", "version": skimage.__version__, "function": f"skimage.data.{ref}"},
                        author=author, license=license_, group=group)
            for name, ref, author, license_, group in rows
        ]
    return SourcePlan(source="sample", splits=splits, real_lr=False,
                      notes={"split": "fixed by hand (see dictsr_core/data/sources/sample.py)"})
