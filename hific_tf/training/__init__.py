"""Training: the step (the two updates), the loop around it, losses, data and the optimizer."""
