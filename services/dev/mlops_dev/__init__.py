"""Development only: the local stack on loopback and the demo that runs on it (not shipped in any image)."""
