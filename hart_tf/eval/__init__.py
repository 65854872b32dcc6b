"""Evaluation: `sequences` (fixed synthetic/KITTI/KTH sets), `clips` (real clips beside the
static box and OpenCV trackers), `scoring` (the one scoring function both use) and `viz`
(plots, strips, GIFs).
"""
