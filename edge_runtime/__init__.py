"""The on-device fixed-FPS loop that writes per-frame session CSVs (DESIGN.md §7). Never imports torch."""
