"""WAN parties: the gateway administrator (GWA) and the market participants (EMT)."""
