"""tinymnist: train, explain and serve a tiny (<5,000 parameter) CNN for MNIST digits on a CPU."""

__version__ = "0.1.0"

__all__ = ["__version__", "load_pretrained"]


def load_pretrained():  # type: ignore[no-untyped-def]
    """The bundled pretrained default model, in eval mode (see README for how it was trained)."""
    from tinymnist.predict import load_pretrained as load

    return load()
