"""The peers' method names (no heavy imports: the CLI builds its choices from these)."""

PRETRAINED_METHODS = ("realesrgan-x4plus", "realsr-df2k")  # published weights, peers/pretrained.py
EQUAL_BUDGET_METHODS = ("plain-realesrgan-deg", "plain-noise-injection")  # PlainSR on synthetic pairs, our budget
