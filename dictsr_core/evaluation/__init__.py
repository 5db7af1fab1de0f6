"""Evaluation: metrics, scoring and reports, result records, the paper-style tables, paired comparisons,
flat / textured regions and index consistency."""
