"""The small-data scenario of a training set by its size: recorded on every run (tag
``polylora.dataset_size_bucket``) and read by the overfitting decision matrix."""

from __future__ import annotations

from polylora.errors import DataError

DATASET_SMALL = 800  # small-data scenarios (fixed: the bucket names quote them)
DATASET_LARGE = 1500
BUCKET_SMALL = "<800: conservative"
BUCKET_STANDARD = "800-1500: standard"
BUCKET_LARGE = ">1500: standard, consider rank 32"


def dataset_size_bucket(n: int) -> str:
    """The small-data dataset-size scenario for ``n`` training examples (boundaries inclusive).

    ``"<800: conservative"`` below 800, ``"800-1500: standard"`` for 800–1500,
    ``">1500: standard, consider rank 32"`` above 1500.
    """
    if n < 0:
        raise DataError(f"n_train_examples={n} is negative; pass the number of training examples")
    if n < DATASET_SMALL:
        return BUCKET_SMALL
    if n <= DATASET_LARGE:
        return BUCKET_STANDARD
    return BUCKET_LARGE
