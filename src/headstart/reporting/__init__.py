"""Reports of runs and comparisons: an HTML page and a JSON of every figure's numbers."""
