"""Stage 7, export: ONNX and TorchScript (portable.py) and the int8 C model for microcontrollers (c/)."""
