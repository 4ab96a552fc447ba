"""C field of wired M-Bus frames (EN 13757-2).

Bit layout: bit 6 PRM (1 = from the master); master to slave: bit 5 FCB (frame
count bit, toggled per new request), bit 4 FCV (FCB valid); slave to master:
bit 5 ACD (access demand, class 1 data waiting), bit 4 DFC (data flow control,
slave cannot take more). Bits 3..0 are the function code.
"""

from __future__ import annotations

from dataclasses import dataclass

SND_NKE = 0x40
"""Link reset (short frame); the slave answers E5."""
SND_UD = 0x53
SND_UD_FCB = 0x73
REQ_UD1 = 0x5A
REQ_UD1_FCB = 0x7A
REQ_UD2 = 0x5B
REQ_UD2_FCB = 0x7B
RSP_UD = 0x08

PRM = 0x40
FCB = 0x20
FCV = 0x10
ACD = 0x20
DFC = 0x10


@dataclass(frozen=True, slots=True, kw_only=True)
class ControlField:
    """A C field taken apart.

    Attributes:
        from_master: the PRM bit.
        function: bits 3..0.
        fcb: frame count bit (master) or ACD (slave).
        fcv: frame count valid (master) or DFC (slave).
    """

    from_master: bool
    function: int
    fcb: bool
    fcv: bool


def split_c(c: int) -> ControlField:
    """Take a C field apart."""
    return ControlField(
        from_master=bool(c & PRM), function=c & 0x0F, fcb=bool(c & FCB), fcv=bool(c & FCV)
    )


def req_ud2(*, fcb: bool) -> int:
    """Return the REQ_UD2 C field with the given frame count bit (0x5B or 0x7B)."""
    return REQ_UD2_FCB if fcb else REQ_UD2


def req_ud1(*, fcb: bool) -> int:
    """Return the REQ_UD1 C field with the given frame count bit (0x5A or 0x7A)."""
    return REQ_UD1_FCB if fcb else REQ_UD1


def snd_ud(*, fcb: bool) -> int:
    """Return the SND_UD C field with the given frame count bit (0x53 or 0x73)."""
    return SND_UD_FCB if fcb else SND_UD


def rsp_ud(*, acd: bool = False, dfc: bool = False) -> int:
    """Return the RSP_UD C field with the ACD and DFC bits (0x08, 0x18, 0x28, 0x38)."""
    return RSP_UD | (ACD if acd else 0) | (DFC if dfc else 0)


def is_snd_nke(c: int) -> bool:
    """Tell whether ``c`` is SND_NKE."""
    return c == SND_NKE


def is_req_ud2(c: int) -> bool:
    """Tell whether ``c`` is REQ_UD2 with either frame count bit."""
    return c & ~FCB == REQ_UD2


def is_req_ud1(c: int) -> bool:
    """Tell whether ``c`` is REQ_UD1 with either frame count bit."""
    return c & ~FCB == REQ_UD1


def is_snd_ud(c: int) -> bool:
    """Tell whether ``c`` is SND_UD with either frame count bit."""
    return c & ~FCB == SND_UD


def is_rsp_ud(c: int) -> bool:
    """Tell whether ``c`` is RSP_UD, whatever its ACD and DFC bits."""
    return c & ~(ACD | DFC) == RSP_UD
