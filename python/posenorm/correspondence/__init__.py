"""Paper 2: "Do Convnets Learn Correspondence?" (Long, Zhang, Darrell, NIPS 2014).

The algorithms here (features and their geometry, nearest neighbours, SIFT,
flow, warp, transfer, detectors, reconstruction, keypoint SVMs, localization)
take explicit arguments; `commands/` holds one module per subcommand of
tools/correspondence.py, `cli` the parser; see docs/correspondence.md.
"""
