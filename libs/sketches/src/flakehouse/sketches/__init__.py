"""Mergeable sketches shared by storage (which builds them next to the data) and query (which
merges them): count distinct and quantiles, from well-kept libraries."""
