"""Stage 2, models: the registered networks, the flat description of their layers that every back end
maps from, BatchNorm folding, and the network summary (parameters, MACs, receptive field)."""
