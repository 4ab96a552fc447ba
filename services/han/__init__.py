"""HAN devices: CLS devices that reach their EMT through the gateway's proxy channel."""
