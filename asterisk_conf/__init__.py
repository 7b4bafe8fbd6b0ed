"""Asterisk configuration templates and the generator behind `callcenter asterisk-conf`."""
