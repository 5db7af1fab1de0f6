"""Analysis: what the learned dictionaries look like (Fig. 4), the explorer, and the figures of the notebooks."""
