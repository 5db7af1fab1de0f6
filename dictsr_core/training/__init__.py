"""Training: `trainer.train` and the Trainer loop, built from named parts.

build.py       the run: device, process group, model (fresh or resumed), loss, optimiser, scheduler, batches
batches.py     the method's dataset and the step-indexed batches (exact resume)
step.py        one step: I_hr_down, the objective, bf16 and the perceptual phase, forward/backward, restarts
losses.py      DictSRLoss, PairedLoss
checkpoint.py  checkpoints written atomically, read as data only, checksummed
run_folder.py  config.yaml, metrics.jsonl, temp files, failed-start cleanup
devices.py     which device; distributed.py: DDP helpers
"""
