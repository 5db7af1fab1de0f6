"""Inference: tiled super_resolve for any image, the fast paths (torch.compile, CUDA graphs, bf16), the colour fix."""
