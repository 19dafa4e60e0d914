"""The int8 C export: lowering to float ops, quantization, the Python integer reference, C code
generation, the portable/Cortex-M runtime (csrc/) and the toolchains that build and measure it."""
