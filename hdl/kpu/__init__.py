"""K210-style KPU: layer descriptors, feature-map layout and the NumPy golden model."""
