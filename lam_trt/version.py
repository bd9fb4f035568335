"""lam-trt's version: a leaf module, so every other module can say which lam-trt made a result without importing the package."""
__version__ = "0.1.0"
