"""plsc: train face recognition with millions of identities on PaddlePaddle."""

__version__ = "0.1.0"
