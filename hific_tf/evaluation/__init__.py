"""Measuring codecs: metrics, scoring, the rate–distortion–perception report, classic codecs and
the perceptual networks."""
