"""voicebot: a real-time voice assistant server on Pipecat."""

import os

__version__ = "0.1.0"

# Thread pools that idle by spinning steal the cores Whisper and the LLM need. Both
# settings are read when the library loads, so they are set here, on the first import of
# voicebot; a value already in the environment wins.
#
# llama.cpp and CTranslate2 run on OpenMP, whose idle threads by default spin for a while
# after every parallel region: a core burnt while the generating thread waits for the
# GIL or a model lock.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# numpy's OpenBLAS starts a worker per core that spins ~0.1 s after each matrix product
# (the mel filters of Whisper's and smart-turn's features): measured in the server, it
# took 140-190 ms of CPU from every Whisper decode and made it ~90 ms slower. The
# products voicebot does are small; one thread is as fast.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
