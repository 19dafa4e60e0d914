"""Deployment to microcontrollers: integer quantization, the bit-exact integer reference, the C code
generator and the toolchains that build and run the generated code (host gcc, arm-none-eabi + QEMU)."""
