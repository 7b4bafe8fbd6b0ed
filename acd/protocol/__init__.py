"""Codecs for the wire protocols the ACD owns (AMI): bytes in, typed messages out."""
