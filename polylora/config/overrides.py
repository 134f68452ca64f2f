"""Hydra command-line overrides written by code: values quoted in Hydra's override grammar.

The one quoting helper for every caller that builds ``key='value'`` overrides (the sweeper's
trial tags, merge's evaluation run, the headline launcher), so a value with quotes or
backslashes parses back to itself.
"""

from __future__ import annotations


def hydra_quote(value: str) -> str:
    """``value`` as a single-quoted string of Hydra's override grammar (``it's`` →
    ``'it\\'s'``); Hydra parses it back to ``value`` exactly."""
    from hydra.core.override_parser.types import Quote, QuotedString

    return QuotedString(text=value, quote=Quote.single).with_quotes()

