"""The sensor farm: 1 to 10^6 simulated meters, their telegrams and wired M-Bus slaves."""
