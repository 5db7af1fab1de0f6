"""Inference: super-resolve any image with a trained model.

tiled.py       super_resolve: tiled with overlap, any size
fast.py        the fast paths: FastInference (channels_last, torch.compile), CUDA graphs, bf16
color_fix.py   the optional wavelet colour fix (not the paper's method)
index_maps.py  the content index map (D_lr entry per code cell) of any image, tiled like super_resolve
"""
