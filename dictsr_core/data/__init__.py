"""Images on disk: reading, degradations, datasets and prepared dataset folders."""
