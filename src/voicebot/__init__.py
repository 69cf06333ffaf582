"""voicebot: a real-time voice assistant server on Pipecat."""

import os

__version__ = "0.1.0"

# llama.cpp and CTranslate2 run on OpenMP, whose idle threads by default spin for a while
# after every parallel region: a core burnt while the generating thread waits for the
# GIL or a model lock. Passive waiting must be chosen before either library loads, so it
# is set here, on the first import of voicebot; an explicit OMP_WAIT_POLICY wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
