"""The networks: normalisations, convolutions, E, G and D."""
