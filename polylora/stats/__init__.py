"""Statistics of comparisons: significance tests, seed x prompt intervals, power, and the
confirmatory analysis plan."""
