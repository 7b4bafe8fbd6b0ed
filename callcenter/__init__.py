"""The composition root: settings, CLI, and the process that wires the packages together."""
