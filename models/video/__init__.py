"""Video input: exact Valley v1 frame sampling with ffmpeg, and the Valley v1 video transform."""
