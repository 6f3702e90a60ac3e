"""Paper 2: "Do Convnets Learn Correspondence?" (Long, Zhang, Darrell, NIPS 2014).

Sections 3 (features and their geometry, nonparametric reconstruction) and
5.1 (keypoint classification) as subcommands of tools/correspondence.py;
see docs/correspondence.md.
"""
