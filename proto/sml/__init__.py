"""SML, Smart Message Language: transport, messages, OBIS list entries."""
