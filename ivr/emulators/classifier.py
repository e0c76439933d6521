"""Speaker classifier for the CPQD 2.4 emulator: emotion, age and gender scores from prosody alone.

CPQD Speech Server 2.4 adds `emotion_scores`, `age_scores` and `gender_scores` to a recognition result
(../shared/specs/003-cpqd-asr-websocket-2.4.md). No emotion, age or gender model installs here, so
`ProsodyClassifier` reads four things off the audio, batch-wise with numpy: loudness (RMS dBFS of the speech
frames) and its spread, pitch (YIN over voiced frames: median and 10-90 % range in semitones), speaking rate
(energy peaks of voiced syllable nuclei per second of speech) and the share of clipped samples, and maps them
onto the ten CPQD emotions through a fixed arousal score.

What it can tell: whether an utterance is louder, higher and faster (activated) or quieter, lower and slower
(deactivated) than espeak-ng's default voice, which is what it is calibrated on (pt-BR and Korean at 8 kHz,
with and without a G.711 round trip; bench/classifier.py prints the confusion). What it cannot tell: words,
real affect, or valence beyond a weak hint from the pitch excursion (compressed -> anger side, wide -> joy
side), so an activated caller is mostly reported in negativo_ativado, as a call centre would want it flagged.
A real caller's own baseline (voice, handset, line level) moves every feature: on real calls its output is a
loudness/pitch/rate reading, not an emotion detector. It knows espeak-ng's default (male) voices only: the
female variants (`pt-br+f2`, `+f4`) talk faster and higher and read as activated even in their default style,
and so may real people who talk fast (the real CPqD `pizza-8k.wav`: emotion neutro, but the negativo_ativado
group on top). Age and gender are an honest weak guess from the median pitch alone (low pitch -> M, very high
-> child), with deliberately broad distributions, gender never above 0.9 and age `confidence` never above
"mid" (mid = clearly adult or clearly child, nothing finer).

`SpeakerClassifier` is the interface the emulator holds, so a model-based classifier can replace this one;
`to_cpqd_json` renders any `SpeakerScores` as the document's three objects.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

# The document's order of `emotion_scores.p` and `p_groups`, and of `age_scores.p`.
EMOTIONS = (
    "enojado",
    "frustrado",
    "triste",
    "ansioso",
    "entusiasmado",
    "feliz",
    "surpreso",
    "amedrontado",
    "neutro",
    "irritado",
)
# The groups are quadrants of the valence/arousal circumplex (Russell 1980): angry, irritated, frustrated,
# anxious and afraid are all unpleasant and activated; sad is the one unpleasant, deactivated emotion in the
# list; enthusiastic, happy and surprised are the pleasant ones (surprise as the activated pleasant corner,
# its unpleasant side being covered by afraid); neutral is the centre. Every emotion is in exactly one group.
EMOTION_GROUPS: dict[str, tuple[str, ...]] = {
    "negativo_desativado": ("triste",),
    "positivo": ("entusiasmado", "feliz", "surpreso"),
    "neutro": ("neutro",),
    "negativo_ativado": ("enojado", "frustrado", "ansioso", "amedrontado", "irritado"),
}
AGE_BANDS = ("0-10", "10-20", "20-30", "30-40", "40-50", "50-60", "60-70", "70-80", "80-90", "90-100")
GENDERS = ("M", "F")  # the order of `gender_scores.p`


class Confidence(StrEnum):
    """`age_scores.confidence`: the document shows "mid"; low and high are its neighbours."""

    LOW = "low"
    MID = "mid"
    HIGH = "high"


@dataclass(frozen=True)
class Prosody:
    """What was measured on one utterance (the classifier's only input)."""

    duration_s: float
    speech_s: float  # frames above the speech threshold
    rms_dbfs: float  # mean power of the speech frames; -100 when there is none
    energy_std_db: float  # spread of the speech frames' level
    clipped_fraction: float  # samples at or near full scale
    voiced_fraction: float  # of the speech frames
    f0_median_hz: float  # 0 when nothing is voiced
    f0_range_st: float  # 10-90 % percentile range of the pitch, in semitones
    syllable_rate: float  # syllable nuclei per second of speech
    rate_variation: float  # coefficient of variation of the gaps between nuclei


@dataclass(frozen=True)
class EmotionScores:
    """`emotion_scores`: `p` follows EMOTIONS, `p_groups` follows EMOTION_GROUPS; each sums to 1."""

    emotion: str
    p: tuple[float, ...]
    p_groups: tuple[float, ...]

    def probability(self, emotion: str) -> float:
        """One emotion's probability."""
        return self.p[EMOTIONS.index(emotion)]

    def group(self, name: str) -> float:
        """One group's probability."""
        return self.p_groups[list(EMOTION_GROUPS).index(name)]

    @property
    def top_group(self) -> str:
        """The most probable group."""
        return list(EMOTION_GROUPS)[int(np.argmax(self.p_groups))]


@dataclass(frozen=True)
class AgeScores:
    """`age_scores`: `p` follows AGE_BANDS and sums to 1."""

    age: int
    p: tuple[float, ...]
    confidence: Confidence


@dataclass(frozen=True)
class GenderScores:
    """`gender_scores`: `p` is (M, F) and sums to 1."""

    gender: str
    p: tuple[float, float]


@dataclass(frozen=True)
class SpeakerScores:
    """The three classifications of one utterance, with the features they came from."""

    emotion: EmotionScores
    age: AgeScores
    gender: GenderScores
    features: Prosody


class SpeakerClassifier(Protocol):
    """What the CPQD emulator needs: 16-bit mono PCM of one utterance in, the three classifications out."""

    def classify(self, pcm: bytes, sample_rate: int = 8000) -> SpeakerScores: ...


def to_cpqd_json(scores: SpeakerScores) -> dict[str, Any]:
    """The `emotion_scores`, `age_scores` and `gender_scores` objects of a CPQD 2.4 recognition result."""
    emotion, age, gender = scores.emotion, scores.age, scores.gender
    return {
        "emotion_scores": {
            "event": "EMOTION RESULT",
            "emotion": emotion.emotion,
            "p": dict(zip(EMOTIONS, emotion.p, strict=True)),
            "p_groups": dict(zip(EMOTION_GROUPS, emotion.p_groups, strict=True)),
        },
        "age_scores": {
            "event": "AGE RESULT",
            "age": age.age,
            "p": dict(zip(AGE_BANDS, age.p, strict=True)),
            "confidence": str(age.confidence),
        },
        "gender_scores": {"event": "GENDER RESULT", "p": list(gender.p), "gender": gender.gender},
    }


# --- measuring prosody ---

HOP_S = 0.010
WINDOW_S = 0.030  # YIN integration window: two periods of the lowest pitch searched
F0_MIN_HZ, F0_MAX_HZ = 60.0, 400.0
YIN_THRESHOLD = 0.2  # first dip of the normalized difference below this marks the period (de Cheveigné 2002)
SILENCE_DBFS = -55.0  # no frame quieter than this counts as speech, whatever the recording's level
SPEECH_RANGE_DB = 30.0  # nor one more than this below the utterance's loud frames
CLIP_LEVEL = 32000  # µ-law's largest step is 32124: at or above this the waveform is flat-topped
NUCLEUS_HALF_WIDTH = 6  # frames either side a syllable nucleus must top: nuclei are >= 60 ms apart
NUCLEUS_DIP_DB = 3.0  # and stand this far above the trough on each side


def _frames(x: NDArray[np.float64], size: int, hop: int) -> NDArray[np.float64]:
    if len(x) < size:
        x = np.pad(x, (0, size - len(x)))
    return np.lib.stride_tricks.sliding_window_view(x, size)[::hop]


def _yin(frames: NDArray[np.float64], window: int, tau_min: int, tau_max: int) -> NDArray[np.float64]:
    """F0 estimate in samples of period per frame (frames are window + tau_max long); 0 where unvoiced."""
    n_fft = 1 << (frames.shape[1] - 1).bit_length()
    spectrum = np.fft.rfft(frames, n_fft)
    head = np.fft.rfft(frames[:, :window], n_fft)
    cross = np.fft.irfft(np.conj(head) * spectrum, n_fft)[:, : tau_max + 1]
    squares = np.concatenate([np.zeros((len(frames), 1)), np.cumsum(frames**2, axis=1)], axis=1)
    taus = np.arange(tau_max + 1)
    shifted_energy = squares[:, taus + window] - squares[:, taus]
    diff = np.maximum(squares[:, window : window + 1] + shifted_energy - 2 * cross, 0.0)
    running = np.cumsum(diff[:, 1:], axis=1)
    cmnd = np.ones_like(diff)
    cmnd[:, 1:] = diff[:, 1:] * taus[1:] / np.maximum(running, 1e-12)
    inner = cmnd[:, 1:-1]
    dips = (inner < cmnd[:, :-2]) & (inner <= cmnd[:, 2:]) & (inner < YIN_THRESHOLD)
    dips[:, : tau_min - 1] = False
    has_dip = dips.any(axis=1)
    tau = np.argmax(dips, axis=1) + 1
    rows = np.arange(len(frames))
    # Parabolic interpolation through the dip and its neighbours gives a sub-sample period.
    left, mid, right = cmnd[rows, tau - 1], cmnd[rows, tau], cmnd[rows, np.minimum(tau + 1, tau_max)]
    curvature = left - 2 * mid + right
    offset = np.where(curvature > 1e-12, 0.5 * (left - right) / np.maximum(curvature, 1e-12), 0.0)
    return np.where(has_dip, tau + np.clip(offset, -1, 1), 0.0)


def _nuclei(level_db: NDArray[np.float64], eligible: NDArray[np.bool_]) -> NDArray[np.intp]:
    """Frames that are syllable nuclei: local maxima of the smoothed level, prominent on both sides."""
    smooth = np.convolve(np.pad(level_db, 1, mode="edge"), np.ones(3) / 3, mode="valid")
    w = NUCLEUS_HALF_WIDTH
    padded = np.pad(smooth, (2 * w, 2 * w), constant_values=-200.0)
    near = np.lib.stride_tricks.sliding_window_view(padded[w:-w], 2 * w + 1)
    peak = (smooth >= near.max(axis=1)) & (smooth > np.concatenate([[-np.inf], smooth[:-1]]))
    wide = np.lib.stride_tricks.sliding_window_view(padded, 2 * w + 1)
    trough_before = wide[: len(smooth), : 2 * w + 1].min(axis=1)
    trough_after = wide[2 * w : 2 * w + len(smooth)].min(axis=1)
    prominent = smooth - np.maximum(trough_before, trough_after) >= NUCLEUS_DIP_DB
    return np.flatnonzero(peak & prominent & eligible)


def measure_prosody(pcm: bytes, sample_rate: int = 8000) -> Prosody:
    """Loudness, pitch and rate of 16-bit little-endian mono PCM: a pure function of the audio."""
    x = np.frombuffer(pcm[: len(pcm) // 2 * 2], dtype="<i2").astype(np.float64)
    duration = len(x) / sample_rate
    hop, window = round(HOP_S * sample_rate), round(WINDOW_S * sample_rate)
    tau_min, tau_max = int(sample_rate / F0_MAX_HZ), math.ceil(sample_rate / F0_MIN_HZ)
    frames = _frames(x, window + tau_max, hop)
    power = np.mean(frames[:, :window] ** 2, axis=1)
    level = 10 * np.log10(np.maximum(power, 1e-10) / 32768.0**2)
    loud = float(np.percentile(level, 95))
    noise = float(np.percentile(level, 10))
    # Above the line's noise too, where there is room for it below the speech.
    threshold = max(SILENCE_DBFS, loud - SPEECH_RANGE_DB, min(noise + 6.0, loud - 10.0))
    speech = level > threshold
    clipped = float(np.mean(np.abs(x) >= CLIP_LEVEL)) if len(x) else 0.0
    if not speech.any():
        return Prosody(duration, 0.0, -100.0, 0.0, clipped, 0.0, 0.0, 0.0, 0.0, 0.0)
    periods = np.zeros(len(frames))
    periods[speech] = _yin(frames[speech], window, tau_min, tau_max)
    voiced = periods > 0
    f0 = sample_rate / periods[voiced]
    if len(f0):
        median = float(np.median(f0))
        semitones = 12 * np.log2(f0 / median)
        f0_range = float(np.percentile(semitones, 90) - np.percentile(semitones, 10))
    else:
        median, f0_range = 0.0, 0.0
    speech_s = float(speech.sum()) * HOP_S
    nuclei = _nuclei(np.where(speech, level, threshold), speech & voiced)
    gaps = np.diff(nuclei)
    variation = float(np.std(gaps) / np.mean(gaps)) if len(gaps) >= 2 else 0.0
    return Prosody(
        duration_s=duration,
        speech_s=speech_s,
        rms_dbfs=float(10 * np.log10(np.mean(power[speech]) / 32768.0**2)),
        energy_std_db=float(np.std(level[speech])),
        clipped_fraction=clipped,
        voiced_fraction=float(voiced.sum() / speech.sum()),
        f0_median_hz=median,
        f0_range_st=f0_range,
        syllable_rate=len(nuclei) / speech_s,
        rate_variation=variation,
    )


# --- from prosody to scores ---


@dataclass(frozen=True)
class Calibration:
    """The reference levels the features are read against: espeak-ng's default voice at 8 kHz (bench/)."""

    rms_dbfs: float = -20.0
    rms_scale_db: float = 3.0
    syllable_rate: float = 4.2
    rate_scale: float = 1.0
    # Pitch is read against the register expected from the median pitch (a soft mix of a man's and a woman's),
    # so a higher voice alone is not read as raised pitch; between 140 and 190 Hz the mix is a guess.
    male_f0_hz: float = 102.0
    female_f0_hz: float = 200.0
    pitch_scale_st: float = 3.0
    gender_boundary_hz: float = 165.0
    gender_width_st: float = 1.5
    f0_range_st: float = 4.6
    f0_range_scale_st: float = 1.2
    child_f0_hz: float = 250.0
    # Arousal is a weighted sum of the three readings. Loudness depends on the line as much as on the speaker,
    # and espeak reads more slowly than people talk, so neither is given the whole say.
    loudness_weight: float = 0.35
    rate_weight: float = 0.25
    pitch_weight: float = 0.4
    # Seconds of speech at which a reading counts half: shorter utterances are pulled towards the prior.
    evidence_s: float = 0.35


# Where each emotion sits in the classifier's two readings (arousal, pitch excursion) in reference units; see
# `_coordinates`. Activated emotions split by excursion: compressed for anger and frustration, wide for joy
# and surprise, between for fear and anxiety (the direction of Juslin & Laukka 2003's survey; espeak's
# agitated voice is compressed, so its share lands on the anger side).
PROTOTYPES: dict[str, tuple[float, float]] = {
    "neutro": (0.0, 0.0),
    "triste": (-1.8, -0.3),
    "enojado": (2.0, -0.3),
    "irritado": (1.5, -0.7),
    "frustrado": (1.1, -1.0),
    "ansioso": (1.3, 0.4),
    "amedrontado": (1.5, 1.1),
    "entusiasmado": (1.7, 1.8),
    "feliz": (0.9, 1.6),
    "surpreso": (1.3, 2.4),
}
PROTOTYPE_WIDTH = 0.75
NEUTRAL_BIAS = 0.6  # neutral wins ties: the reading is weak, flag only what stands out
CLIP_WEIGHT = 2.0  # per % of clipped samples, towards enojado: shouting overdrives the line
# Readings beyond this many reference units are taken as this far: outside espeak's range nothing is known.
READING_LIMIT = 2.5
# What is reported with no evidence at all (silence): the neutral group on top, no group ruled out.
EMOTION_PRIOR = tuple(0.46 if e == "neutro" else 0.06 for e in EMOTIONS)
ADULT_AGES = (0.01, 0.06, 0.2, 0.22, 0.2, 0.15, 0.09, 0.05, 0.015, 0.005)
CHILD_AGES = (0.55, 0.35, 0.05, 0.02, 0.01, 0.01, 0.005, 0.003, 0.001, 0.001)
AGE_MIDPOINTS = np.arange(5.0, 100.0, 10.0)
GENDER_CAP = 0.9  # pitch alone never makes one gender more than 90 % sure


def _sigmoid(v: float) -> float:
    return 1.0 / (1.0 + math.exp(-max(-60.0, min(60.0, v))))


def _semitones(f: float, reference: float) -> float:
    return 12.0 * math.log2(f / reference)


class ProsodyClassifier:
    """Emotion, age and gender from loudness, pitch and speaking rate: a `SpeakerClassifier` with no model."""

    def __init__(self, calibration: Calibration | None = None) -> None:
        self.calibration = calibration or Calibration()

    def classify(self, pcm: bytes, sample_rate: int = 8000) -> SpeakerScores:
        """Score one utterance of 16-bit little-endian mono PCM."""
        if sample_rate < 4000:
            raise ValueError(f"sample rate {sample_rate} Hz is too low to read pitch")
        features = measure_prosody(pcm, sample_rate)
        female = self._female(features)
        return SpeakerScores(
            emotion=self.emotion(features, female),
            age=self.age(features),
            gender=GenderScores(gender="F" if female > 0.5 else "M", p=(1.0 - female, female)),
            features=features,
        )

    def _female(self, features: Prosody) -> float:
        c = self.calibration
        if features.f0_median_hz <= 0:
            return 0.5
        lean = _sigmoid(_semitones(features.f0_median_hz, c.gender_boundary_hz) / c.gender_width_st)
        return 0.5 + (lean - 0.5) * 2 * (GENDER_CAP - 0.5)

    def _coordinates(self, f: Prosody, female: float) -> tuple[float, float, float]:
        """(arousal, pitch excursion, evidence 0-1): readings in reference units, bounded."""
        c = self.calibration
        evidence = f.speech_s**2 / (f.speech_s**2 + c.evidence_s**2)
        loud = (f.rms_dbfs - c.rms_dbfs) / c.rms_scale_db
        # Rate and excursion need several syllables to mean anything: shrink them on short utterances.
        rate = (f.syllable_rate - c.syllable_rate) / c.rate_scale * evidence
        if f.f0_median_hz > 0:
            register = 2.0 ** ((1 - female) * math.log2(c.male_f0_hz) + female * math.log2(c.female_f0_hz))
            pitch = _semitones(f.f0_median_hz, register) / c.pitch_scale_st
            excursion = (f.f0_range_st - c.f0_range_st) / c.f0_range_scale_st * evidence
        else:
            pitch = excursion = 0.0
        loud, rate, pitch, excursion = (
            max(-READING_LIMIT, min(READING_LIMIT, v)) for v in (loud, rate, pitch, excursion)
        )
        arousal = c.loudness_weight * loud + c.rate_weight * rate + c.pitch_weight * pitch
        return arousal, excursion, evidence

    def emotion(self, features: Prosody, female: float = 0.5) -> EmotionScores:
        """The ten emotions as a mixture of prototypes, pulled towards the prior as evidence shrinks."""
        if features.speech_s <= 0:
            p = np.array(EMOTION_PRIOR)
        else:
            *point, evidence = self._coordinates(features, female)
            centres = np.array([PROTOTYPES[e] for e in EMOTIONS])
            logits = -np.sum((centres - np.array(point)) ** 2, axis=1) / (2 * PROTOTYPE_WIDTH**2)
            logits[EMOTIONS.index("neutro")] += NEUTRAL_BIAS
            logits[EMOTIONS.index("enojado")] += CLIP_WEIGHT * 100 * features.clipped_fraction
            model = np.exp(logits - logits.max())
            p = evidence * model / model.sum() + (1 - evidence) * np.array(EMOTION_PRIOR)
        p = p / p.sum()
        groups = tuple(
            float(sum(p[EMOTIONS.index(e)] for e in members)) for members in EMOTION_GROUPS.values()
        )
        return EmotionScores(
            emotion=EMOTIONS[int(np.argmax(p))], p=tuple(float(v) for v in p), p_groups=groups
        )

    def age(self, features: Prosody) -> AgeScores:
        """Child or adult from the pitch register; within adults, only a population prior."""
        c = self.calibration
        if features.f0_median_hz > 0:
            child = _sigmoid(_semitones(features.f0_median_hz, c.child_f0_hz) / c.gender_width_st)
        else:
            child = 0.1
        p = (1 - child) * np.array(ADULT_AGES) + child * np.array(CHILD_AGES)
        p = p / p.sum()
        clear = features.speech_s >= 1.0 and features.f0_median_hz > 0 and (child < 0.1 or child > 0.9)
        return AgeScores(
            age=round(float(p @ AGE_MIDPOINTS)),
            p=tuple(float(v) for v in p),
            confidence=Confidence.MID if clear else Confidence.LOW,
        )
