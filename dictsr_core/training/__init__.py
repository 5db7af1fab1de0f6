"""Training: the trainer (the loop), its losses, checkpoints, devices and DDP helpers."""
