"""The IVR: flows as data, the session state machine, the AGI and AudioSocket servers, speech."""
