"""Silver: typed, deduplicated, conformed tables driven by the data contracts."""
