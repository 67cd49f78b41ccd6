"""The simulator: a synthetic population, its identity registry, and the hospitals that serve it."""
