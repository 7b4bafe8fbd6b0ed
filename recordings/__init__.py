"""Recording control, storage, retention and transcription."""
