"""The paper's peers: pretrained real-world SR models (Real-ESRGAN, RealSR) and the equal-budget synthetic-degradation
peers trained here (plain-realesrgan-deg, plain-noise-injection)."""
