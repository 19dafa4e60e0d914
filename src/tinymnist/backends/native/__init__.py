"""The native CPU engine: C kernels (csrc/, contracts in csrc/tm_kernels.h) loaded with ctypes, a
program mapped from the model's layer description, and a runner that trains and infers with them."""
