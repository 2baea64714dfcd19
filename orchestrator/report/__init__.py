"""``orchestrate report``: the selection table and figures, from the Parquet tables only."""
