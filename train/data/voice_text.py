"""What a voiced speaker says: phrases of real words, keywords, and the SSML that carries
them to the synthesizer.

A phrase is 3-8 words of one language drawn from a word list (the sentences are word
salad with natural phonology and the synthesizer's own prosody, not grammar). With the
speaker's keyword rate one word is a *keyword* of class c (== salient posture id c,
:data:`train.data.synth_script.POSTURE_NAMES`): a fixed word per class and language, so
the class is audible, spoken with strong emphasis (slower, louder) so it stands out as
the synthetic corpus's keywords do. Word lists come in two disjoint halves: ``train`` and
``held_out`` (held-out sentences: the words of held-out voices and of phrases that start
in a dev/val clip; keywords are shared, they define the classes).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from train.data.synth_script import NUM_POSTURES

#: Keyword of each posture class, per language (order of POSTURE_NAMES: raise_hand,
#: spread_both_hands, point, hands_together, raise_both_hands).
KEYWORDS: dict[str, tuple[str, ...]] = {
    "en": ("hello", "everywhere", "there", "together", "fantastic"),
    "de": ("hallo", "überall", "dort", "zusammen", "fantastisch"),
    "fr": ("bonjour", "partout", "voilà", "ensemble", "fantastique"),
    "es": ("hola", "todos", "allí", "juntos", "fantástico"),
    "it": ("ciao", "dappertutto", "laggiù", "insieme", "fantastico"),
}
_WORDS = {  # (train words, held-out words); disjoint, none of them a keyword
    "en": ("we will go to the market and buy some fresh bread today because my brother "
           "wants to cook dinner for his friends who are coming over tonight with children "
           "after school",
           "every morning she reads old letters from her grandmother while drinking strong "
           "coffee near an open window in summer"),
    "de": ("wir gehen heute in die Stadt und kaufen frisches Brot weil mein Bruder für "
           "seine Freunde kochen möchte die am Abend mit ihren Kindern kommen",
           "jeden Morgen liest sie alte Briefe von ihrer Großmutter und trinkt starken "
           "Kaffee am offenen Fenster im Sommer"),
    "fr": ("nous allons au marché acheter du pain frais parce que mon frère veut cuisiner "
           "pour ses amis qui viennent ce soir avec leurs enfants après école",
           "chaque matin elle lit les vieilles lettres de sa grand-mère en buvant un café "
           "fort près de la fenêtre ouverte en été"),
    "es": ("vamos al mercado a comprar pan fresco porque mi hermano quiere cocinar para "
           "sus amigos que vienen esta noche con sus hijos después de la escuela",
           "cada mañana ella lee cartas viejas de su abuela mientras bebe café fuerte junto "
           "a una ventana abierta en verano"),
    "it": ("andiamo al mercato a comprare pane fresco perché mio fratello vuole cucinare "
           "per gli amici che vengono stasera con i loro bambini dopo la scuola",
           "ogni mattina lei legge vecchie lettere della nonna mentre beve caffè forte "
           "vicino a una finestra aperta in estate"),
}


def _split_words(train: str, held: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Unique train words, and the held-out words that are not train words."""
    train_words = tuple(dict.fromkeys(train.split()))
    return train_words, tuple(w for w in dict.fromkeys(held.split()) if w not in train_words)


WORDS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    lang: _split_words(train, held) for lang, (train, held) in _WORDS.items()
}
MIN_WORDS, MAX_WORDS = 3, 8  # words per phrase
PAUSE_S = (0.25, 0.9)  # pause after a phrase, uniform (s)
KEYWORD_GAIN_DB = 6.0  # a keyword is spoken this much louder (espeak's SSML; flite: a gain)
KEYWORD_PROSODY = (f'<prosody rate="75%" volume="+{KEYWORD_GAIN_DB:g}dB">'
                   '<emphasis level="strong">', "</emphasis></prosody>")


@dataclass(frozen=True)
class PhrasePlan:
    """One phrase to speak: ``words``; ``keyword_index`` (-1 = none) and its class."""

    words: tuple[str, ...]
    keyword_index: int
    keyword_class: int
    pause_s: float


def draw_phrase(rng: np.random.Generator, language: str, keyword_rate: float,
                posture_weights: tuple[float, ...], held_out_text: bool) -> PhrasePlan:
    """Draw a phrase (always the same number of draws, whatever comes out); the keyword
    class follows the speaker's ``posture_weights`` ((NUM_POSTURES,) probabilities)."""
    if language not in WORDS:
        raise ValueError(f"no word lists for language {language!r}; have {sorted(WORDS)}")
    words = WORDS[language][1 if held_out_text else 0]
    n = int(rng.integers(MIN_WORDS, MAX_WORDS + 1))
    picks = rng.integers(len(words), size=MAX_WORDS)
    has_keyword = rng.random() < keyword_rate
    slot = int(rng.integers(1, n))
    keyword_class = int(rng.choice(NUM_POSTURES, p=np.asarray(posture_weights)))
    pause = float(rng.uniform(*PAUSE_S))
    chosen = [words[i] for i in picks[:n]]
    if has_keyword:
        chosen[slot] = KEYWORDS[language][keyword_class]
    return PhrasePlan(tuple(chosen), slot if has_keyword else -1, keyword_class, pause)


def phrase_ssml(plan: PhrasePlan) -> tuple[str, list[int]]:
    """The phrase as SSML text and each word's text position (1-based character offset,
    what espeak-ng's WORD events report)."""
    parts: list[str] = []
    positions: list[int] = []
    length = 0
    for i, word in enumerate(plan.words):
        if parts:
            parts.append(" ")
            length += 1
        if i == plan.keyword_index:
            parts.append(KEYWORD_PROSODY[0])
            length += len(KEYWORD_PROSODY[0])
        positions.append(length + 1)
        parts.append(word)
        length += len(word)
        if i == plan.keyword_index:
            parts.append(KEYWORD_PROSODY[1])
            length += len(KEYWORD_PROSODY[1])
    parts.append(".")
    return "".join(parts), positions
