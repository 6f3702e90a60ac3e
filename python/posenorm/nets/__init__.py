"""Nets both papers stand on: the VGG-16 backbones and their trunk, AlexNet,
their ImageNet weights from pinned public archives, and model directories."""
