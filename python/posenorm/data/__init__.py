"""Datasets: CUB-200-2011, PASCAL VOC keypoints, synthetic birds, LMDBs."""
