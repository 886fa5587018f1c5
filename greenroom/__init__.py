"""Greenroom: characters from stories in Discord and Telegram chats.

The folders ``bots/ core/ memory/ models/`` are installed as ``greenroom.bots`` and so on
(``setup.py``); this package adds the entry point (``cli``), the composition root
(``compose``) and the one error base class every layer shares (``errors``).
"""
