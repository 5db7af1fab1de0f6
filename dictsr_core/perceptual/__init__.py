"""The perceptual network: LPIPS v0.1 on offline-converted VGG16/AlexNet backbones, shared by the training
loss (LPIPS-VGG term) and the LPIPS metric."""
