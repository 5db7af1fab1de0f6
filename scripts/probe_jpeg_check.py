"""Does a JPEG round trip in the training probe make its index agreement track the validation one? (A check for
the next probe, not a rule: it reads only training photos, but the qualities tried are given by hand.)

The training agreement of `dictsr derive`'s rules compares each training photo's HR-down with a copy that has real
LR noise added (training/code_coarsening.training_probe). On photos-aim, whose degradation ends in JPEG, it reads far
above the validation agreement; here the noisy copies are also JPEG-encoded at each --quality and the agreement of
each run is printed beside the plain one.

    python scripts/probe_jpeg_check.py --data data/photos-aim --runs runs/cpu/dictsr-c8s runs/cpu/dictsr-c8g runs/cpu/dictsr
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from dictsr_core.data.degradations import jpeg_roundtrip
from dictsr_core.inference.tiled import image_tensor, pad_to_grid
from dictsr_core.training.checkpoint import inference_model, load_checkpoint
from dictsr_core.training.code_coarsening import training_probe


@torch.no_grad()
def agreement(model, clean: list, noisy: list) -> float:
    shares = []
    for a, b in zip(clean, noisy):
        xa, xb = (pad_to_grid(image_tensor(image, "cpu"), model.code_patch) for image in (a, b))
        shares.append(float((model.indices(xa) == model.indices(xb)).float().mean()))
    return float(np.mean(shares))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--runs", nargs="+", required=True, help="DictSR run folders trained on --data")
    parser.add_argument("--quality", type=int, nargs="+", default=[30, 50, 70])
    args = parser.parse_args()
    payloads = [load_checkpoint(f"{run}/checkpoints/last.pt") for run in args.runs]
    probe = training_probe(args.data, payloads[0]["config"])
    encoded = {q: [jpeg_roundtrip(image, q) for image in probe["noisy"]] for q in args.quality}
    for run, payload in zip(args.runs, payloads):
        model = inference_model(payload, source=run)
        cells = [f"noise {agreement(model, probe['clean'], probe['noisy']):.3f}"]
        cells += [f"noise + JPEG q{q} {agreement(model, probe['clean'], encoded[q]):.3f}" for q in args.quality]
        print(f"{run}: training agreement " + ", ".join(cells), flush=True)


if __name__ == "__main__":
    main()
