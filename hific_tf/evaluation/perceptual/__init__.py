"""Perceptual networks and no-reference metrics: LPIPS, Inception features, NIQE."""
