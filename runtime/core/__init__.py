"""Text to pooled vectors: tokenize, plan windows, batch them, run the backend, stitch, pool spans."""
