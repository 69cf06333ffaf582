"""User-turn strategies: when the person has finished speaking (Pipecat's turns API)."""
