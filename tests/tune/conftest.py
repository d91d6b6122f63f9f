"""The Tune tests reuse the training tests' generated `tiny` dataset."""
from train.conftest import tiny_root  # noqa: F401  (fixture)
