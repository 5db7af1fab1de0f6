"""Performance: `dictsr bench` (DictSR against the RRDBNet x4 anchor) and the cost of a model (layers, MACs, FLOPs)."""
