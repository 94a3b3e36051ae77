"""Reference data: the school organizations of the network."""
