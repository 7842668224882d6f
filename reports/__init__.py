"""Aggregation of result CSV/JSON files into tables, plots and an HTML report (reads files only)."""
