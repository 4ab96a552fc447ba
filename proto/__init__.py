"""Wire formats: bus envelope, topics, batches, M-Bus, wireless M-Bus, SML. No sockets."""
