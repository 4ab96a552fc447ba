"""The radio channel: path loss, noise, interferers, collisions, bit errors per receiver."""
