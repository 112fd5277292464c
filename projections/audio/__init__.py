"""Audio usage: seconds of audio transcribed or spoken, per deployment, model and minute."""
