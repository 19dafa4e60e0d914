"""The web export: the int8 C model compiled to WebAssembly, in a static page that draws and reads digits."""
