"""What the texture gate's threshold costs on textured content, measured on the training photos only.

For a run folder holding `dictsr` (the fine code), `dictsr-c8s` and `dictsr-c8g` (the gated code, whose draw and
coarse blur are used), each training photo's four quadrant windows (64 x 64 LR of the noisy HR-down, where the
validation crops of a photo lie) are scored in LPIPS-Alex, split into flat and textured windows as the tables split
photos (share of flat 8x8 HR blocks >= 0.5), for the fine code, dictsr-c8s and the gated lookup at each threshold,
beside the training index agreement the threshold gives (item 12's probe). No validation image is read.

    python scripts/texture_gate_frontier.py --runs runs/seed3-photos-ntire --data data/photos-ntire \
        --out results/texture-gate/photos-ntire-seed3.md
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from dictsr_core.atomic import atomic_write_text
from dictsr_core.data.prepare import val_crop_box
from dictsr_core.evaluation.regions import flat_blocks
from dictsr_core.inference.tiled import image_tensor, pad_to_grid
from dictsr_core.model.dictionaries import gate_indices
from dictsr_core.model.dictsr import to_signed
from dictsr_core.model.texture_gate import lr_roughness
from dictsr_core.perceptual.lpips_models import build_lpips
from dictsr_core.training.checkpoint import inference_model, load_checkpoint
from dictsr_core.training.code_coarsening import training_probe
from dictsr_core.training.coarse_size import agreement_bound


def quadrant_windows(lr: np.ndarray, hr: np.ndarray, window: int = 64) -> list[tuple[np.ndarray, np.ndarray]]:
    out = []
    for k in range(4):
        top, left = (v // 4 for v in val_crop_box(*hr.shape[:2], 4 * window, k, 4))
        out.append((np.ascontiguousarray(lr[top : top + window, left : left + window]),
                    np.ascontiguousarray(hr[4 * top : 4 * (top + window), 4 * left : 4 * (left + window)])))
    return out


@torch.no_grad()
def frontier(runs: Path, data: Path, gates=(2.0, 3.0, 4.0, 6.0, 8.0)) -> str:
    source = load_checkpoint(runs / "dictsr" / "checkpoints" / "last.pt")
    fine = inference_model(source)
    split = inference_model(load_checkpoint(runs / "dictsr-c8s" / "checkpoints" / "last.pt"))
    gated = inference_model(load_checkpoint(runs / "dictsr-c8g" / "checkpoints" / "last.pt"))
    d = gated.dictionaries
    probe = training_probe(data, source["config"])
    lpips = build_lpips("alex")

    def encoded(image):
        x = pad_to_grid(image_tensor(image, "cpu"), gated.code_patch)
        features = gated.enc_lr(to_signed(x))
        return x, lr_roughness(x, gated.code_patch), d.fine_indices(features), d.coarse_indices(features, d.coarse_keep)

    def score(sr, hr):
        return float(lpips(to_signed(sr[:, :, : hr.shape[0], : hr.shape[1]].clamp(0, 1).mul(255).round().div(255)),
                           to_signed(image_tensor(hr, "cpu"))))

    pairs = [(encoded(a), encoded(b)) for a, b in zip(probe["clean"], probe["noisy"])]
    windows = [(encoded(lr), hr, bool(flat_blocks(hr).mean() >= 0.5))
               for noisy, hr in zip(probe["noisy"], probe["hr"]) for lr, hr in quadrant_windows(noisy, hr)]
    flat = np.array([w[2] for w in windows])
    rows = []
    for label, model in (("dictsr (all 1024 entries)", fine), (f"dictsr-c8s ({split.cfg.entries} entries)", split)):
        s = np.array([score(model(w[0][0]), w[1]) for w in windows])
        rows.append((label, "-", s.mean(), s[flat].mean(), s[~flat].mean()))
    for gate in gates:
        shares = [float((gate_indices(a[2], a[3], a[1], gate) == gate_indices(b[2], b[3], b[1], gate)).float().mean())
                  for a, b in pairs]
        s = np.array([score(gated.decode(gate_indices(e[2], e[3], e[1], gate), e[0]), hr) for e, hr, _ in windows])
        mark = " (kept)" if gate == d.texture_gate else ""
        rows.append((f"gate {gate:g}{mark}", f"{np.mean(shares):.3f} ({agreement_bound(shares):.3f})",
                     s.mean(), s[flat].mean(), s[~flat].mean()))
    head = (f"Training photos of `{data.name}` (no validation image), run folder `{runs}`: {len(windows)} windows of 64x64 LR "
            f"(4 per photo; {int(flat.sum())} flat, {int((~flat).sum())} textured), noisy HR-down against HR. Gated rows: "
            f"dictsr-c8g's coarse code ({d.coarse_keep.numel()} entries, lookup blur {d.lookup_blur:g}) at each threshold; "
            "training agreement with its bound (mean less 2 SE). Written by scripts/texture_gate_frontier.py.\n\n"
            "| code | training agreement (bound) | LPIPS-Alex, all windows | flat windows | textured windows |\n"
            "|---|---|---|---|---|\n")
    return head + "".join(f"| {r[0]} | {r[1]} | {r[2]:.4f} | {r[3]:.4f} | {r[4]:.4f} |\n" for r in rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=Path, required=True, help="folder with dictsr, dictsr-c8s and dictsr-c8g")
    parser.add_argument("--data", type=Path, required=True, help="the data folder those runs trained on")
    parser.add_argument("--out", type=Path, default=None, help="also write the table here")
    args = parser.parse_args()
    table = frontier(args.runs, args.data)
    print(table)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(args.out, table)


if __name__ == "__main__":
    main()
