"""Codecs for the wire protocols the IVR owns (FastAGI, AudioSocket)."""
