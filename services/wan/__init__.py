"""WAN market participants: the gateway administrator (GWA) and external market participants (EMT)."""
