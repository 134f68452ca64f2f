"""Training objectives: plugins the Trainer calls for the loss (built from ``conf/objective``)."""
