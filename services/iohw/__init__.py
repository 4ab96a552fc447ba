"""The manipulation I/O board: relays, DAC/ADC channels and wired buses of the test lab."""
