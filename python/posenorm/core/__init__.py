"""Shared infrastructure: atomic writes, running Caffe, metrics."""
