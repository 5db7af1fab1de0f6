"""What index agreement is worth for a trained run: per validation pair, RGB PSNR of the SR decoded from the
degraded LR's own content indices and from its clean LR's indices, exact and near (8 nearest D_lr entries)
agreement; prints the means. Usage: python scripts/index_agreement_worth.py RUN_DIR DATA_DIR [--json OUT]"""

import argparse
import json

import numpy as np

from dictsr_core.data.datasets import PairedImages
from dictsr_core.evaluation.index_consistency import agreement_worth
from dictsr_core.evaluation.results import checkpoint_path
from dictsr_core.training.checkpoint import inference_model, load_checkpoint


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("run")
    parser.add_argument("data")
    parser.add_argument("--json")
    args = parser.parse_args()
    path = checkpoint_path(args.run)
    model = inference_model(load_checkpoint(path), "cpu", source=str(path))
    pairs = PairedImages(f"{args.data}/val_lr", f"{args.data}/val_hr")
    rows = [{"name": item["name"], **agreement_worth(model, item["lr"], item["hr"])} for item in pairs]
    means = {key: float(np.mean([row[key] for row in rows])) for key in rows[0] if key != "name"}
    for key, value in means.items():
        print(f"{key:>20}: {value:.4f}")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"run": args.run, "data": args.data, "means": means, "images": rows}, handle, indent=1)


if __name__ == "__main__":
    main()
