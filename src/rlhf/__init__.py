"""An InstructGPT training platform: the library behind the DVC stages."""
