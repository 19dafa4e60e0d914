"""Stage 3, back ends: where a model's arithmetic runs - PyTorch devices, and the native C engine
(kernels, their ctypes binding, the mapping from a model's layer description to the engine's program)."""
