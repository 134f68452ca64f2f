"""Training objectives: plugins the Trainer calls for the loss (``polylora/conf/objective``)."""
