"""The on-device fixed-FPS loop that writes per-frame session CSVs (docs/contracts.md#the-session-files).
Never imports torch."""
