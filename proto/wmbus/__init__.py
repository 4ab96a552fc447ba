"""Wireless M-Bus and OMS (EN 13757-4/7): link layer, transport layer, security.

Public entry points: :func:`decode_telegram`, :func:`encode_telegram`, :func:`new_telegram`
and :class:`Telegram`; the layers live in ``link``, ``ell``, ``afl``, ``transport`` and
``security``; security failures are the :class:`ProtocolError` subclasses in ``errors``.
"""

from smtestbed.proto.wmbus.encoder import encode_telegram, new_telegram, seal_telegram
from smtestbed.proto.wmbus.errors import BadMacError, DecryptionError, No2F2FError, WrongKeyError
from smtestbed.proto.wmbus.fields import MeterAddress
from smtestbed.proto.wmbus.link import FrameFormat, LinkHeader
from smtestbed.proto.wmbus.telegram import Security, Telegram, decode_telegram

__all__ = [
    "BadMacError",
    "DecryptionError",
    "FrameFormat",
    "LinkHeader",
    "MeterAddress",
    "No2F2FError",
    "Security",
    "Telegram",
    "WrongKeyError",
    "decode_telegram",
    "encode_telegram",
    "new_telegram",
    "seal_telegram",
]
