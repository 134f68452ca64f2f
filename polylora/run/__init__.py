"""One job end to end: validate, train, evaluate, record."""
