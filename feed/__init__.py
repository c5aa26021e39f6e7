"""The live session feed's core: models, channels and keys, reducer, protocol, hub, Redis bus."""
