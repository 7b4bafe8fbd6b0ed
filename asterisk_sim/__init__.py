"""The built-in Asterisk simulator: AMI server, dialplan runner, FastAGI and AudioSocket clients."""
