"""I/O adapters of the ACD: the panoramisk AMI link and Redis state."""
