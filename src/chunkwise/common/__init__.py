"""Small utilities every layer may use: one CLI parser behaviour, one atomic-write helper."""
