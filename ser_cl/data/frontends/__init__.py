"""Front-ends: audio in, frames out. Reading an audio file of any format as 16 kHz mono (and
playing it faster or slower), the thesis' log-power spectrogram and log-mel filterbank, a
self-supervised upstream's hidden states (``upstream``; its parameters and frame arithmetic
without torch in ``upstream_params``) and openSMILE functionals of one waveform. One
waveform at a time: nothing here knows a corpus layout, a store or a fold.

May import: nothing else in ser_cl.data.
"""
