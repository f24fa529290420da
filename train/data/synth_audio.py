"""Speech-like audio for the synthetic corpus: a source-filter model rendered from a script.

Voiced vowels: a sawtooth glottal source following an F0 contour (phrase declination,
accent bumps, a raised hat on keywords) filtered through three formant resonators. Each
vowel's filtered carrier is normalised to unit RMS and multiplied by its amplitude
envelope, so the per-sample *voiced envelope* (:func:`voiced_envelope`) is, by
construction, the RMS amplitude of the voiced signal. Unvoiced consonants are band-passed
white noise. A faint noise floor keeps the signal from being digitally silent.

Filtering is done per segment in the frequency domain (rFFT, multiply by the resonators'
exact IIR frequency response, inverse rFFT) with a zero-padded tail, which is fast and
needs only numpy.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from sdk.features import FeatureConfig
from train.data.synth_script import (
    CONSONANTS,
    VOWEL_FORMANTS_HZ,
    Script,
    SpeakerProfile,
    Syllable,
)

FORMANT_BANDWIDTHS_HZ = (80.0, 100.0, 140.0)
ACCENT_GAIN = 1.4  # amplitude factor of an accented syllable
KEYWORD_GAIN = 2.0  # amplitude factor of a stressed keyword (+6 dB)
ACCENT_PITCH = 0.12  # relative F0 bump of an accented syllable
KEYWORD_PITCH = 0.35  # relative F0 rise on a keyword
DECLINATION = 0.2  # relative F0 drop from phrase start to phrase end
OUTPUT_GAIN = 0.06  # scales the mix to peaks around 0.5 (RMS about -27 dBFS)
NOISE_FLOOR = 3e-4  # std of the background noise (about -70 dBFS)
ATTACK_S, RELEASE_S = 0.02, 0.04  # vowel envelope ramps
_FILTER_TAIL = 512  # zero padding (samples) that absorbs the resonators' ringing


def syllable_gain(syllable: Syllable) -> float:
    """Voiced amplitude of a syllable relative to an ordinary one."""
    if syllable.keyword >= 0:
        return KEYWORD_GAIN
    return ACCENT_GAIN if syllable.accent else 1.0


def _vowel_span(syllable: Syllable, sample_rate: int) -> tuple[int, int]:
    return round(syllable.vowel_onset_s * sample_rate), round(syllable.end_s * sample_rate)


def voiced_envelope(script: Script, n_samples: int, config: FeatureConfig) -> np.ndarray:
    """Per-sample RMS amplitude of the voiced signal (before OUTPUT_GAIN), float64 (n_samples,).

    A raised-cosine attack and release on each vowel; 0 in consonants and pauses.
    """
    sr = config.sample_rate
    env = np.zeros(n_samples, dtype=np.float64)
    for syl in script.syllables:
        a, b = _vowel_span(syl, sr)
        b = min(b, n_samples)
        if b <= a:
            continue
        n = b - a
        idx = np.arange(n, dtype=np.float64)
        attack = np.clip(idx / (ATTACK_S * sr), 0.0, 1.0)
        release = np.clip((n - idx) / (RELEASE_S * sr), 0.0, 1.0)
        shape = 0.5 - 0.5 * np.cos(np.pi * np.minimum(attack, release))
        decay = 1.0 - 0.25 * idx / n  # vowels lose a little energy towards their end
        env[a:b] = syllable_gain(syl) * shape * decay
    return env


def f0_contour(script: Script, profile: SpeakerProfile, n_samples: int,
               config: FeatureConfig) -> np.ndarray:
    """Per-sample F0 in Hz, float64 (n_samples,); defined everywhere (used where voiced)."""
    sr = config.sample_rate
    f0 = np.full(n_samples, profile.f0_hz, dtype=np.float64)
    t = np.arange(n_samples, dtype=np.float64) / sr
    for ph in script.phrases:
        a, b = round(ph.onset_s * sr), min(round(ph.end_s * sr), n_samples)
        progress = (t[a:b] - ph.onset_s) / max(ph.end_s - ph.onset_s, 1e-6)
        f0[a:b] *= 1.0 + 0.5 * DECLINATION - DECLINATION * progress
    for syl in script.syllables:
        if not syl.accent:
            continue
        a, b = _vowel_span(syl, sr)
        b = min(b, n_samples)
        x = (t[a:b] - syl.vowel_onset_s) / max(syl.end_s - syl.vowel_onset_s, 1e-6)
        bump = KEYWORD_PITCH if syl.keyword >= 0 else ACCENT_PITCH
        f0[a:b] *= 1.0 + bump * np.sin(np.pi * np.clip(x, 0.0, 1.0)) ** 0.5
    return f0


def _resonator_response(freqs_hz: np.ndarray, formants_hz: tuple[float, ...],
                        sample_rate: int) -> np.ndarray:
    """Complex response of a cascade of 2-pole resonators at ``freqs_hz``, unit gain at DC."""
    z1 = np.exp(-2j * np.pi * freqs_hz / sample_rate)  # z^-1 on the unit circle
    response = np.ones_like(z1)
    for f, bw in zip(formants_hz, FORMANT_BANDWIDTHS_HZ, strict=True):
        r = np.exp(-np.pi * bw / sample_rate)
        c = 2.0 * r * np.cos(2.0 * np.pi * f / sample_rate)
        gain_dc = 1.0 - c + r * r
        response = response * gain_dc / (1.0 - c * z1 + r * r * z1 * z1)
    return response


def _filtered_unit_rms(segment: np.ndarray,
                       response: Callable[[int], np.ndarray]) -> np.ndarray:
    """Filter ``segment`` (float64 (n,)) by ``response(n_fft)`` (rFFT bins); unit RMS out."""
    n = segment.shape[0]
    n_fft = n + _FILTER_TAIL
    out = np.fft.irfft(np.fft.rfft(segment, n_fft) * response(n_fft), n_fft)[:n]
    rms = float(np.sqrt(np.mean(out * out)))
    return out / rms if rms > 0 else out


def render_audio(script: Script, profile: SpeakerProfile, n_samples: int,
                 rng: np.random.Generator, config: FeatureConfig) -> np.ndarray:
    """Render the script's speech: float32 (n_samples,) at ``config.sample_rate``, in [-1, 1]."""
    sr = config.sample_rate
    env = voiced_envelope(script, n_samples, config)
    f0 = f0_contour(script, profile, n_samples, config)
    phase = np.cumsum(f0 / sr)
    source = 2.0 * (phase - np.floor(phase)) - 1.0  # sawtooth glottal source
    signal = np.zeros(n_samples, dtype=np.float64)
    for syl in script.syllables:
        a, b = _vowel_span(syl, sr)
        b = min(b, n_samples)
        if b > a:
            formants = tuple(f * profile.formant_scale for f in VOWEL_FORMANTS_HZ[syl.vowel])

            def vowel_response(n_fft: int, formants=formants) -> np.ndarray:
                return _resonator_response(np.fft.rfftfreq(n_fft, 1.0 / sr), formants, sr)

            carrier = _filtered_unit_rms(source[a:b], vowel_response)
            signal[a:b] += carrier * env[a:b]
        if syl.consonant >= 0:
            _add_consonant(signal, syl, rng, sr)
    signal = OUTPUT_GAIN * signal + NOISE_FLOOR * rng.standard_normal(n_samples)
    return np.clip(signal, -1.0, 1.0).astype(np.float32)


def _add_consonant(signal: np.ndarray, syl: Syllable, rng: np.random.Generator,
                   sr: int) -> None:
    """Add the band-passed noise of one consonant to ``signal`` (float64 (N,), in place)."""
    lo, hi, _, gain = CONSONANTS[syl.consonant]
    a, b = round(syl.onset_s * sr), min(round(syl.vowel_onset_s * sr), signal.shape[0])
    if b <= a:
        return

    def band(n_fft: int) -> np.ndarray:
        freqs = np.fft.rfftfreq(n_fft, 1.0 / sr)
        edge = 300.0  # Hz, raised-cosine skirts
        rise = np.clip((freqs - lo + edge) / (2 * edge), 0.0, 1.0)
        fall = np.clip((hi + edge - freqs) / (2 * edge), 0.0, 1.0)
        return (0.5 - 0.5 * np.cos(np.pi * rise)) * (0.5 - 0.5 * np.cos(np.pi * fall))

    noise = _filtered_unit_rms(rng.standard_normal(b - a), band)
    n = b - a
    idx = np.arange(n, dtype=np.float64)
    ramp = np.minimum(np.clip(idx / (0.005 * sr), 0, 1), np.clip((n - idx) / (0.01 * sr), 0, 1))
    signal[a:b] += gain * syllable_gain(syl) * noise * ramp
