"""Vision-language models as video backends: llama.cpp's multimodal library in process, or an
OpenAI-compatible server. Greenroom samples the frames itself (``models/video/frames.py``) and
hands them over as images with their times."""
