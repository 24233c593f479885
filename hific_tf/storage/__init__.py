"""Files on disk: checkpoints, bundled weights, SavedModel export, images, atomic writes and
the download cache."""
