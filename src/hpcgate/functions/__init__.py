"""Functions: registered Python functions run by worker pools (services) on the systems."""
