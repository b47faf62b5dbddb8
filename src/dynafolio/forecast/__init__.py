"""Forecasters: models that predict next-period values per asset from the history so far."""
