"""Bottom-layer pieces every package may import: they import nothing of jaxperf."""
