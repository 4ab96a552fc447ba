"""Radio physics of the channel: constants and closed-form formulas (EN 13757-4, 868 MHz).

Airtime of a frame of ``n`` bytes (L-field to last CRC) in mode ``m``::

    airtime = (PREAMBLE_CHIPS[m] + SYNC_CHIPS[m] + CHIPS_PER_BYTE[m] * n) / CHIP_RATE[m]

======  ============  ==========================  ===========  ========  ============
mode    chip rate     coding                      preamble     sync      chips/byte
======  ============  ==========================  ===========  ========  ============
S1      32.768 kcps   Manchester (16.384 kbit/s)  279 x "01"   18 chips  16
T1      100 kcps      3-out-of-6 (66.67 kbit/s)   19 x "01"    10 chips  12
C1      100 kcps      NRZ (100 kbit/s)            16 x "01"    32 chips  8
======  ============  ==========================  ===========  ========  ============

(minimum preamble lengths of EN 13757-4; S1 long preamble; C1 sync word 0x543D54CD).

Received power (dBm), log-distance path loss with log-normal shadowing::

    P_rx = P_tx + G_rx - (PL0 + 10 * n_exp * log10(max(d, 1 m))) - sum(obstacle losses) + X

``X ~ N(0, sigma)`` dB, fixed per (meter, receiver) link. ``PL0`` at 1 m is the free-space loss
``20 * log10(4 * pi * f / c)`` (31.2 dB at 868.95 MHz).

Noise floor (dBm): ``kTB + NF = -174 dBm/Hz + 10 * log10(B) + NF`` with ``B`` the receiver's
noise bandwidth for the mode.

Bit-error rate of non-coherent binary FSK, energy per *data* bit (so Manchester and 3-out-of-6
coding are credited with their extra chips)::

    Eb/N0 = SINR * B / R_b          BER = 0.5 * exp(-(Eb/N0) / 2)

with ``R_b`` the mode's data bit rate and ``SINR`` linear (signal over interference + noise).
"""

from __future__ import annotations

import math

from smtestbed.proto.radio import FREQUENCY_HZ as RADIO_FREQUENCY_HZ
from smtestbed.proto.radio import RadioMode

# mode numbers of the ``mode`` column (proto.radio.RadioMode)
MODE_S1, MODE_T1, MODE_C1 = int(RadioMode.S1), int(RadioMode.T1), int(RadioMode.C1)
MODE_NAMES = tuple(m.name for m in RadioMode)
N_MODES = 3

CHIP_RATE = (32_768.0, 100_000.0, 100_000.0)  # chips/s
PREAMBLE_CHIPS = (2 * 279, 2 * 19, 2 * 16)
SYNC_CHIPS = (18, 10, 32)
CHIPS_PER_BYTE = (16, 12, 8)  # Manchester 2 chips/bit, 3-of-6 6 chips/nibble, NRZ 1 chip/bit
BIT_RATE = tuple(8.0 * c / b for c, b in zip(CHIP_RATE, CHIPS_PER_BYTE, strict=True))  # bit/s

# carrier frequency of each mode, Hz; T1 and C1 share 868.95 MHz, so they collide with each
# other and never with S1 at 868.3 MHz
FREQUENCY_HZ = tuple(RADIO_FREQUENCY_HZ[m] for m in RadioMode)
CHANNELS = (868.3e6, 868.95e6)
MODE_CHANNEL = tuple(CHANNELS.index(f) for f in FREQUENCY_HZ)

# receiver noise bandwidth per mode, Hz: a typical channel filter (EN 13757-4 specifies the
# transmitter, not receiver filters), about 6 and 3 times the data bit rate
NOISE_BANDWIDTH_HZ = (100e3, 200e3, 200e3)

THERMAL_NOISE_DBM_HZ = -174.0  # kT at 290 K
SPEED_OF_LIGHT = 299_792_458.0


def airtime_s(mode: int, nbytes: int) -> float:
    """Return the time on air of a frame of ``nbytes`` bytes in ``mode``, s."""
    chips = PREAMBLE_CHIPS[mode] + SYNC_CHIPS[mode] + CHIPS_PER_BYTE[mode] * nbytes
    return chips / CHIP_RATE[mode]


def free_space_loss_1m_db(frequency_hz: float = 868.95e6) -> float:
    """Return the free-space path loss at 1 m, dB."""
    return 20.0 * math.log10(4.0 * math.pi * frequency_hz / SPEED_OF_LIGHT)


def noise_floor_dbm(bandwidth_hz: float, noise_figure_db: float) -> float:
    """Return thermal noise kTB plus the receiver's noise figure, dBm."""
    return THERMAL_NOISE_DBM_HZ + 10.0 * math.log10(bandwidth_hz) + noise_figure_db


def ebn0_from_sinr(sinr: float, mode: int) -> float:
    """Return Eb/N0 (linear) of a data bit from the linear SINR in the mode's noise bandwidth."""
    return sinr * NOISE_BANDWIDTH_HZ[mode] / BIT_RATE[mode]


def ber_fsk_noncoherent(ebn0: float) -> float:
    """Return the bit-error rate of non-coherent 2-FSK: ``0.5 * exp(-Eb/N0 / 2)``."""
    return 0.5 * math.exp(-0.5 * ebn0)


def db_to_mw(dbm: float) -> float:
    """Convert dBm to mW (or dB to a linear power ratio)."""
    return float(10.0 ** (dbm / 10.0))


def aloha_success(offered_load: float) -> float:
    """Return pure-ALOHA success probability ``exp(-2 G)`` at offered load ``G``."""
    return math.exp(-2.0 * offered_load)
