"""ML building blocks the steps use: datasets, architectures, model I/O and import, tfmot rebuilds, statistics."""
