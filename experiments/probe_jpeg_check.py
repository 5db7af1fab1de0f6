"""Does a JPEG round trip in the training probe make its index agreement track the validation one? (A check for
the next probe, not a rule: it reads only training photos, but the qualities tried are given by hand.)

The training agreement of `dictsr derive`'s rules compares each training photo's HR-down with a copy that has real
LR noise added. On photos-aim, whose degradation ends in JPEG, that reads far above the validation agreement; here
the plain noisy copies are also JPEG-encoded at each --quality, and each run's agreement is printed for the plain
copies, for each quality, and for the probe the rules now use (training/code_coarsening.training_probe, which
round-trips the copies at the quality data/jpeg_trace.py finds in the real LR).

    python scripts/probe_jpeg_check.py --data data/photos-aim --runs runs/cpu/dictsr-c8s runs/cpu/dictsr-c8g runs/cpu/dictsr
"""

from __future__ import annotations

import argparse

from dictsr_core.data.datasets import load_folder
from dictsr_core.data.degradations import jpeg_roundtrip
from dictsr_core.data.noise_bank import extract_noise_patches
from dictsr_core.training.checkpoint import inference_model, load_checkpoint
from dictsr_core.training.code_coarsening import training_probe
from dictsr_core.training.coarse_size import agreement_by_size, noisy_copies


def agreement(model, clean: list, noisy: list) -> float:
    return agreement_by_size(model, clean, noisy, {None: None})[None]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--runs", nargs="+", required=True, help="DictSR run folders trained on --data")
    parser.add_argument("--quality", type=int, nargs="+", default=[30, 50, 70])
    args = parser.parse_args()
    payloads = [load_checkpoint(f"{run}/checkpoints/last.pt") for run in args.runs]
    probe = training_probe(args.data, payloads[0]["config"])
    _, real_lr = load_folder(f"{args.data}/train_lr")
    plain = noisy_copies(probe["clean"], extract_noise_patches(real_lr, payloads[0]["config"].train.hr_crop // 4))
    encoded = {q: [jpeg_roundtrip(image, q) for image in plain] for q in args.quality}
    for run, payload in zip(args.runs, payloads):
        model = inference_model(payload, source=run)
        cells = [f"noise {agreement(model, probe['clean'], plain):.3f}"]
        cells += [f"noise + JPEG q{q} {agreement(model, probe['clean'], encoded[q]):.3f}" for q in args.quality]
        cells.append(f"the probe (JPEG found: {probe['jpeg_quality']}) {agreement(model, probe['clean'], probe['noisy']):.3f}")
        print(f"{run}: training agreement " + ", ".join(cells), flush=True)


if __name__ == "__main__":
    main()
