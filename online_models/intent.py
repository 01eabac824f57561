"""Watchlists in plain language: a pure parser from a request to a structured intent.

``parse(text, vocab)`` reads a viewer's request ("no horror, under 2 hours, for
the kids") into an :class:`Intent`: hard constraints (genres wanted, tags
unwanted, runtime and year bounds, audience, kind), soft preferences (other
wanted tags, mood), titles it should resemble, and the words it did not
understand. Nothing here touches a model or a clock: the vocabulary (tag values
present in the catalog, title names, the current year) is handed in, so the
same text and vocabulary always give the same intent.

Misspellings are corrected against the lexicon with rapidfuzz (a word of four
letters or more that is at least 80 % similar to a known word); unknown words
are listed in ``unknown`` and otherwise ignored. A request from which nothing
usable can be read, or whose constraints contradict each other, is marked
``answerable = False`` with a reason.

>>> vocab = Vocabulary.default(now_year=2026)
>>> it = parse("no horor, under 2 hours, for the kids", vocab)
>>> it.unwanted, it.runtime_max_s, it.audience, it.corrections
(['genre:horror'], 7200, ['family', 'kids'], {'horor': 'horror'})
>>> parse("documentaries about space from the last five years", vocab).to_dict()["hard"]
{'genres_any': ['genre:documentary'], 'unwanted': [], 'runtime_min_s': None, \
'runtime_max_s': None, 'year_min': 2021, 'year_max': None, 'audience': [], 'kind': None}
>>> parse("what is the weather in Paris", vocab).answerable
False
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from rapidfuzz import fuzz, process

# Phrase -> tag keys. Genres are hard constraints (any of them); other tags are soft.
LEXICON: dict[str, tuple[str, ...]] = {
    # genre
    "drama": ("genre:drama",),
    "dramas": ("genre:drama",),
    "dramatic": ("genre:drama",),
    "comedy": ("genre:comedy",),
    "comedies": ("genre:comedy",),
    "funny": ("genre:comedy",),
    "hilarious": ("genre:comedy",),
    "sitcom": ("genre:comedy",),
    "laughs": ("genre:comedy",),
    "rom-com": ("genre:romance", "genre:comedy"),
    "romcom": ("genre:romance", "genre:comedy"),
    "thriller": ("genre:thriller",),
    "thrillers": ("genre:thriller",),
    "scifi": ("genre:scifi",),
    "sci-fi": ("genre:scifi",),
    "science fiction": ("genre:scifi",),
    "futuristic": ("genre:scifi",),
    "documentary": ("genre:documentary",),
    "documentaries": ("genre:documentary",),
    "docuseries": ("genre:documentary",),
    "docs": ("genre:documentary",),
    "true story": ("genre:documentary",),
    "nonfiction": ("genre:documentary",),
    "animation": ("genre:animation",),
    "animated": ("genre:animation",),
    "cartoon": ("genre:animation",),
    "cartoons": ("genre:animation",),
    "anime": ("genre:animation",),
    "romance": ("genre:romance",),
    "romantic": ("genre:romance",),
    "love story": ("genre:romance",),
    "horror": ("genre:horror",),
    "scary": ("genre:horror",),
    "spooky": ("genre:horror",),
    "frightening": ("genre:horror",),
    "gore": ("genre:horror",),
    "slasher": ("genre:horror",),
    "crime": ("genre:crime",),
    "heist": ("genre:crime",),
    "gangster": ("genre:crime",),
    "detective": ("genre:crime",),
    "fantasy": ("genre:fantasy",),
    "magic": ("genre:fantasy",),
    "wizards": ("genre:fantasy",),
    "dragons": ("genre:fantasy",),
    # tone
    "dark": ("tone:dark",),
    "bleak": ("tone:dark",),
    "grim": ("tone:dark",),
    "light": ("tone:light",),
    "lighthearted": ("tone:light",),
    "light-hearted": ("tone:light",),
    "breezy": ("tone:light",),
    "quirky": ("tone:quirky",),
    "weird": ("tone:quirky",),
    "offbeat": ("tone:quirky",),
    "eccentric": ("tone:quirky",),
    "gritty": ("tone:gritty",),
    "raw": ("tone:gritty",),
    "heartwarming": ("tone:heartwarming",),
    "feel-good": ("tone:heartwarming",),
    "feelgood": ("tone:heartwarming",),
    "uplifting": ("tone:heartwarming",),
    "wholesome": ("tone:heartwarming",),
    "touching": ("tone:heartwarming",),
    "suspenseful": ("tone:suspenseful",),
    "suspense": ("tone:suspenseful",),
    "tense": ("tone:suspenseful",),
    "gripping": ("tone:suspenseful",),
    # pacing
    "slow": ("pacing:slow",),
    "slow-paced": ("pacing:slow",),
    "slow burn": ("pacing:slow",),
    "leisurely": ("pacing:slow",),
    "unhurried": ("pacing:slow",),
    "fast": ("pacing:fast",),
    "fast-paced": ("pacing:fast",),
    "action-packed": ("pacing:fast",),
    "breakneck": ("pacing:fast",),
    "steady": ("pacing:medium",),
    "well-paced": ("pacing:medium",),
    # narrative
    "nonlinear": ("narrative:nonlinear",),
    "non-linear": ("narrative:nonlinear",),
    "flashbacks": ("narrative:nonlinear",),
    "anthology": ("narrative:anthology",),
    "ensemble": ("narrative:ensemble",),
    "character-driven": ("narrative:character-driven",),
    "character study": ("narrative:character-driven",),
    "chronological": ("narrative:linear",),
    "linear": ("narrative:linear",),
    # theme
    "family": ("theme:family",),
    "revenge": ("theme:revenge",),
    "vengeance": ("theme:revenge",),
    "payback": ("theme:revenge",),
    "coming-of-age": ("theme:coming-of-age",),
    "coming of age": ("theme:coming-of-age",),
    "growing up": ("theme:coming-of-age",),
    "survival": ("theme:survival",),
    "survive": ("theme:survival",),
    "stranded": ("theme:survival",),
    "friendship": ("theme:friendship",),
    "friends": ("theme:friendship",),
    "buddies": ("theme:friendship",),
    "power": ("theme:power",),
    "politics": ("theme:power",),
    "political": ("theme:power",),
    "love": ("theme:love",),
    "mystery": ("theme:mystery",),
    "mysteries": ("theme:mystery",),
    "whodunit": ("theme:mystery",),
    "identity": ("theme:identity",),
    "justice": ("theme:justice",),
    "courtroom": ("theme:justice",),
    # setting
    "city": ("setting:urban",),
    "urban": ("setting:urban",),
    "rural": ("setting:rural",),
    "countryside": ("setting:rural",),
    "farm": ("setting:rural",),
    "space": ("setting:space",),
    "outer space": ("setting:space",),
    "astronauts": ("setting:space",),
    "planets": ("setting:space",),
    "historical": ("setting:historical",),
    "period piece": ("setting:historical",),
    "history": ("setting:historical",),
    "fantasy world": ("setting:fantasy-world",),
    "another world": ("setting:fantasy-world",),
    "workplace": ("setting:workplace",),
    "office": ("setting:workplace",),
    "hospital": ("setting:workplace",),
}
# Phrase -> audience values allowed (a hard constraint).
AUDIENCE: dict[str, tuple[str, ...]] = {
    "kids": ("kids", "family"),
    "kid": ("kids", "family"),
    "children": ("kids", "family"),
    "child": ("kids", "family"),
    "little ones": ("kids", "family"),
    "toddlers": ("kids",),
    "family-friendly": ("kids", "family"),
    "family friendly": ("kids", "family"),
    "for the family": ("kids", "family"),
    "for the whole family": ("kids", "family"),
    "family movie night": ("kids", "family"),
    "all ages": ("kids", "family"),
    "teens": ("teen", "family", "kids"),
    "teen": ("teen", "family", "kids"),
    "teenagers": ("teen", "family", "kids"),
    "adults": ("adult",),
    "grown-ups": ("adult",),
    "mature": ("adult",),
}
# Mood words: soft preferences, reported as the intent's mood.
MOODS: dict[str, tuple[str, ...]] = {
    "relaxing": ("tone:light", "tone:heartwarming"),
    "relax": ("tone:light", "tone:heartwarming"),
    "chill": ("tone:light", "pacing:slow"),
    "cozy": ("tone:heartwarming", "pacing:slow"),
    "cosy": ("tone:heartwarming", "pacing:slow"),
    "cheer me up": ("tone:light", "tone:heartwarming"),
    "cheerful": ("tone:light",),
    "fun": ("tone:light",),
    "sad": ("genre:drama",),
    "cry": ("genre:drama", "tone:heartwarming"),
    "thrilling": ("tone:suspenseful", "pacing:fast"),
    "adrenaline": ("pacing:fast", "tone:suspenseful"),
    "exciting": ("pacing:fast",),
    "thought-provoking": ("narrative:character-driven", "pacing:slow"),
    "mind-bending": ("narrative:nonlinear", "genre:scifi"),
    "creepy": ("tone:dark", "tone:suspenseful"),
    "romantic evening": ("theme:love",),
}
MOOD_AS_GENRE = False  # mood genres stay soft: "something sad" is not a genre filter
KINDS: dict[str, str] = {
    "movie": "movie",
    "movies": "movie",
    "film": "movie",
    "films": "movie",
    "series": "episode",
    "shows": "episode",
    "tv series": "episode",
    "episodes": "episode",
    "episode": "episode",
    "tv show": "episode",
}
NEGATIONS = ("no", "not", "without", "nothing", "avoid", "except", "never", "skip", "none")
_STOPWORDS_TEXT = """a an the and or but for of to in on at with from about
    something anything some any
    me my i we us our you want would like to watch find show give recommend please
    that this those these is are be it its just really very too so kind sort type
    tonight today weekend evening night afternoon morning lazy sunday saturday friday
    what good great best new old than more less maybe perhaps mostly bit little
    which who where when how one ones lets let's let get set around over under into
    up down out there here have has can could should need looking look mood feel
    time long short hours hour minutes minute mins min h year years last past since
    before after between older newer shorter longer recent latest classic made
    decade decades century paced pace pacing story stories tale tales plot vibe vibes
    stuff title titles watchlist list options pick picks thing things watching seen
    them they he she his her their something's it's i'm i'd that's lot lots much many
    all whole only also even both same other another such still released watched
    enjoy enjoyed"""
STOPWORDS = set(_STOPWORDS_TEXT.split())
NUMBERS = {
    "one": 1,
    "two": 2,
    "three": 3,
    "four": 4,
    "five": 5,
    "six": 6,
    "seven": 7,
    "eight": 8,
    "nine": 9,
    "ten": 10,
    "a": 1,
    "an": 1,
    "a couple of": 2,
    "couple of": 2,
    "few": 3,
    "half an": 0.5,
}
AUDIENCES_ALL = ("kids", "family", "teen", "adult")


@dataclass(frozen=True)
class TitleRef:
    title_id: str
    name: str
    runtime_s: float
    year: int | None


@dataclass
class Vocabulary:
    """What the parser may recognise: tag keys present, titles by name, the year."""

    tag_keys: frozenset[str]
    titles: dict[str, TitleRef]  # lower-cased name -> reference
    now_year: int

    @classmethod
    def default(cls, now_year: int, titles: Iterable[TitleRef] = ()) -> Vocabulary:
        keys = {k for ks in (*LEXICON.values(), *MOODS.values()) for k in ks}
        keys |= {f"audience:{a}" for a in AUDIENCES_ALL}
        return cls(frozenset(keys), _by_name(titles), now_year)

    @classmethod
    def from_catalog(cls, catalog: Any, now_year: int) -> Vocabulary:
        """From a :class:`features.catalog.Catalog`: its tags, its names (first id wins)."""
        keys: set[str] = set()
        refs = []
        for t in catalog.titles.values():
            keys.update(t.tag_keys)
            if t.episode in (None, 1):
                refs.append(TitleRef(t.title_id, t.name, t.runtime_s, t.release_year))
        return cls(frozenset(keys), _by_name(refs), now_year)


def _by_name(titles: Iterable[TitleRef]) -> dict[str, TitleRef]:
    out: dict[str, TitleRef] = {}
    for t in sorted(titles, key=lambda r: r.title_id):
        name = re.sub(r"\s+e\d+$", "", t.name.lower().strip())
        out.setdefault(name, t)
    return out


@dataclass
class Intent:
    text: str
    genres_any: list[str] = field(default_factory=list)  # hard: at least one of these
    unwanted: list[str] = field(default_factory=list)  # hard: none of these
    wanted: list[str] = field(default_factory=list)  # soft: the more the better
    mood: list[str] = field(default_factory=list)  # mood words read (their tags are soft)
    runtime_min_s: int | None = None
    runtime_max_s: int | None = None
    year_min: int | None = None
    year_max: int | None = None
    audience: list[str] = field(default_factory=list)  # hard: one of these audiences
    kind: str | None = None  # hard: "movie" or "episode"
    similar_to: list[TitleRef] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)
    corrections: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    answerable: bool = True
    reason: str | None = None

    @property
    def has_hard(self) -> bool:
        return bool(
            self.genres_any
            or self.unwanted
            or self.audience
            or self.kind
            or self.runtime_min_s is not None
            or self.runtime_max_s is not None
            or self.year_min is not None
            or self.year_max is not None
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "hard": {
                "genres_any": self.genres_any,
                "unwanted": self.unwanted,
                "runtime_min_s": self.runtime_min_s,
                "runtime_max_s": self.runtime_max_s,
                "year_min": self.year_min,
                "year_max": self.year_max,
                "audience": self.audience,
                "kind": self.kind,
            },
            "soft": {"wanted": self.wanted, "mood": self.mood},
            "similar_to": [{"title_id": t.title_id, "name": t.name} for t in self.similar_to],
            "unknown_words": self.unknown,
            "corrections": self.corrections,
            "notes": self.notes,
            "answerable": self.answerable,
            "reason": self.reason,
        }


# --- parsing ------------------------------------------------------------------------------

_KNOWN_WORDS = sorted(
    {w for p in (*LEXICON, *AUDIENCE, *MOODS, *KINDS) for w in p.split() if len(w) >= 4}
)
_CLAUSE_SPLIT = re.compile(r"[,;.!?]|\bbut\b|\bthough\b")
_SCOPE_END = {"and", "with", "just", "only", "yet", "rather", "instead"}
_DURATION = r"(\d+(?:\.\d+)?|an?|one|two|three|four|half an)\s*(h|hrs?|hours?|m|mins?|minutes?)\b"


def _norm(text: str) -> str:
    t = text.lower().replace("’", "'")
    t = re.sub(r"[^a-z0-9'\-\s,;.!?:]", " ", t)
    return re.sub(r"\s+", " ", t).strip()


def _seconds(amount: str, unit: str) -> int:
    n = float(amount) if amount[0].isdigit() else float(NUMBERS.get(amount, 1))
    return round(n * (3600 if unit.startswith("h") else 60))


def _correct(words: list[str], intent: Intent) -> list[str]:
    out = []
    for w in words:
        bare = w.strip("'-,;.!?:")
        if (
            len(bare) >= 4
            and not bare.isdigit()
            and bare not in STOPWORDS
            and bare not in NEGATIONS
            and bare not in NUMBERS
            and bare not in _KNOWN_WORDS
            and not any(bare == p for p in LEXICON)
        ):
            hit = process.extractOne(bare, _KNOWN_WORDS, scorer=fuzz.ratio, score_cutoff=80)
            if hit is not None:
                intent.corrections[bare] = hit[0]
                out.append(w.replace(bare, hit[0]))
                continue
        out.append(w)
    return out


def _pattern(table: Mapping[str, Any]) -> re.Pattern[str]:
    """One regex for all phrases of a table, longest first, on word boundaries."""
    alts = "|".join(re.escape(p) for p in sorted(table, key=lambda p: -len(p)))
    return re.compile(r"(?<![a-z\-])(" + alts + r")(?![a-z\-])")


_LEX_RE = _pattern(LEXICON)
_AUD_RE = _pattern(AUDIENCE)
_MOOD_RE = _pattern(MOODS)
_KIND_RE = _pattern(KINDS)


def _take(clause: str, pattern: re.Pattern[str]) -> tuple[list[tuple[int, str]], str]:
    """Occurrences (position, phrase) of a table's phrases in ``clause``; matched text is
    blanked so later tables do not read it again."""
    found = [(m.start(), m.group(1)) for m in pattern.finditer(clause)]
    for pos, p in found:
        clause = clause[:pos] + " " * len(p) + clause[pos + len(p) :]
    return found, clause


def _negated_at(clause: str, pos: int) -> bool:
    """A negation word earlier in the same clause ("no horror or gore", "not too dark")."""
    negated = False
    for w in clause[:pos].split():
        if w in NEGATIONS or w.endswith("n't"):
            negated = True
        elif w in _SCOPE_END:
            negated = False
    return negated


def parse(text: str, vocab: Vocabulary) -> Intent:
    intent = Intent(text=text)
    norm = _norm(text)
    if not norm:
        intent.answerable, intent.reason = False, "empty request"
        return intent
    norm = _split_compounds(norm)
    norm = re.sub(r"\b(anything|everything|all|whatever) but\b", r"\1 except", norm)
    norm = _similar(norm, vocab, intent)
    norm = _bounds(norm, vocab, intent)
    words = _correct(norm.split(" "), intent)
    norm = " ".join(words)
    recognised: set[str] = set()
    for clause in _CLAUSE_SPLIT.split(norm):
        clause = f" {clause.strip()} "
        aud, clause = _take(clause, _AUD_RE)
        for pos, p in aud:
            recognised.update(p.split())
            if _negated_at(clause, pos):
                intent.notes.append(f"'{p}' negated: audience not restricted")
                continue
            _add_audience(intent, AUDIENCE[p])
        moods, clause = _take(clause, _MOOD_RE)
        for pos, p in moods:
            recognised.update(p.split())
            if not _negated_at(clause, pos):
                intent.mood.append(p)
                _add(intent.wanted, MOODS[p], vocab)
        kinds, clause = _take(clause, _KIND_RE)
        for pos, p in kinds:
            recognised.update(p.split())
            if not _negated_at(clause, pos):
                intent.kind = KINDS[p]
            else:
                intent.kind = "movie" if KINDS[p] == "episode" else "episode"
        tags, clause = _take(clause, _LEX_RE)
        for pos, p in tags:
            recognised.update(p.split())
            keys = LEXICON[p]
            if _negated_at(clause, pos):
                _add(intent.unwanted, keys, vocab)
            else:
                for k in keys:
                    if k.startswith("genre:"):
                        _add(intent.genres_any, (k,), vocab)
                    else:
                        _add(intent.wanted, (k,), vocab)
    intent.wanted = [k for k in intent.wanted if k not in intent.genres_any]
    for w in words:
        bare = w.strip("'-,;.!?:")
        if (
            bare
            and bare not in STOPWORDS
            and bare not in recognised
            and bare not in NEGATIONS
            and not bare.isdigit()
            and not bare.endswith("n't")
            and bare not in intent.unknown
        ):
            intent.unknown.append(bare)
    _check(intent)
    return intent


def _add(target: list[str], keys: Iterable[str], vocab: Vocabulary) -> None:
    for k in keys:
        if k in vocab.tag_keys and k not in target:
            target.append(k)


def _add_audience(intent: Intent, values: Iterable[str]) -> None:
    allowed = set(values)
    intent.audience = sorted(set(intent.audience) & allowed if intent.audience else allowed)


_HYPHENATED = frozenset(p for t in (LEXICON, AUDIENCE, MOODS, KINDS) for p in t if "-" in p)


def _split_compounds(norm: str) -> str:
    """ "light-paced" -> "light paced": hyphenated words the tables do not know are split."""
    known = _HYPHENATED

    def fix(m: re.Match[str]) -> str:
        w = m.group(0)
        return w if w in known else w.replace("-", " ")

    return re.sub(r"[a-z]+(?:-[a-z]+)+", fix, norm)


def _similar(norm: str, vocab: Vocabulary, intent: Intent) -> str:
    """ "like X", "similar to X", "in the style of X": X matched against title names
    (the matched name is removed from the text parsed next)."""
    m = re.search(
        r"(?<!would )(?<!'d )(?<!i )"
        r"\b(?:similar to|like|in the style of|same vibe as|reminds me of)\s+(.+?)"
        r"(?=\s+but\b|,|;|\.|$)",
        norm,
    )
    if not m or not vocab.titles:
        return norm
    target = m.group(1).strip().strip("'\"")
    target = re.sub(r"^(the (movie|film|show|series)\s+)", "", target)
    hit = process.extractOne(target, list(vocab.titles), scorer=fuzz.ratio, score_cutoff=80)
    if hit is None:
        if not any(w in _KNOWN_WORDS or w in LEXICON for w in target.split()):
            intent.notes.append(f"no title named like {target!r}")
        return norm
    ref = vocab.titles[hit[0]]
    intent.similar_to.append(ref)
    rest = norm[m.end() :]
    if re.search(r"\bshorter\b", rest) and ref.runtime_s:
        intent.runtime_max_s = round(ref.runtime_s) - 60
    if re.search(r"\blonger\b", rest) and ref.runtime_s:
        intent.runtime_min_s = round(ref.runtime_s) + 60
    if re.search(r"\b(newer|more recent)\b", rest) and ref.year:
        intent.year_min = ref.year + 1
    if re.search(r"\bolder\b", rest) and ref.year:
        intent.year_max = ref.year - 1
    rest = re.sub(r"\b(but )?(shorter|longer|newer|more recent|older)\b", " ", rest)
    return norm[: m.start()] + " , " + rest


def _bounds(norm: str, vocab: Vocabulary, intent: Intent) -> str:
    """Runtime and year bounds; the matched text is removed from what is parsed next."""
    now = vocab.now_year

    def cut(pattern: str, fn: Any) -> None:
        nonlocal norm
        for m in list(re.finditer(pattern, norm)):
            fn(m)
        norm = re.sub(pattern, " , ", norm)

    def rt_max(m: re.Match[str]) -> None:
        s = _seconds(m.group(2), m.group(3))
        intent.runtime_max_s = min(s, intent.runtime_max_s or s)

    def rt_min(m: re.Match[str]) -> None:
        s = _seconds(m.group(2), m.group(3))
        intent.runtime_min_s = max(s, intent.runtime_min_s or s)

    cut(r"\b(under|less than|shorter than|at most|no more than|max|within|below|up to)\s+"
        + _DURATION, rt_max)  # fmt: skip
    cut(r"\b(over|more than|longer than|at least|above)\s+" + _DURATION, rt_min)

    def short(m: re.Match[str]) -> None:
        intent.runtime_max_s = min(5400, intent.runtime_max_s or 5400)
        intent.notes.append("'short' read as at most 90 minutes")

    def long_(m: re.Match[str]) -> None:
        intent.runtime_min_s = max(7200, intent.runtime_min_s or 7200)
        intent.notes.append("'long' read as at least 2 hours")

    cut(r"\b(short|quick|brief)\b(?!\s+(?:stories|story))", short)
    cut(r"\b(long|epic|lengthy)\b(?!\s+ago)", long_)

    def last_n(m: re.Match[str]) -> None:
        raw = m.group(1) or "1"
        n = int(raw) if raw.isdigit() else int(NUMBERS.get(raw, 1))
        unit = m.group(2)
        years = n * 10 if unit.startswith("decade") else n
        intent.year_min = now - years

    cut(r"\b(?:from |in |of )?(?:the )?(?:last|past)\s+(\d+|one|two|three|four|five|six|seven|"
        r"eight|nine|ten|few|couple of)?\s*(years?|decades?)\b", last_n)  # fmt: skip

    def decade(m: re.Match[str]) -> None:
        d = m.group(1)
        start = int(d) if len(d) == 4 else (1900 + int(d) if int(d) >= 30 else 2000 + int(d))
        intent.year_min, intent.year_max = start, start + 9

    cut(r"\b(?:from |in )?(?:the )?'?(\d{2}|\d{4})'?s\b", decade)

    def before(m: re.Match[str]) -> None:
        intent.year_max = int(m.group(1)) - 1

    def after(m: re.Match[str]) -> None:
        intent.year_min = int(m.group(1)) + (0 if m.group(0).startswith("since") else 1)

    def between(m: re.Match[str]) -> None:
        intent.year_min, intent.year_max = sorted((int(m.group(1)), int(m.group(2))))

    cut(r"\bbetween\s+(\d{4})\s+and\s+(\d{4})\b", between)
    cut(r"\b(?:before|earlier than|prior to)\s+(\d{4})\b", before)
    cut(r"\b(?:after|since|later than)\s+(\d{4})\b", after)

    def exact(m: re.Match[str]) -> None:
        y = int(m.group(1))
        intent.year_min, intent.year_max = y, y

    cut(r"\b(?:from|in|released in|made in)\s+((?:19|20)\d{2})\b", exact)

    def recent(m: re.Match[str]) -> None:
        intent.year_min = max(intent.year_min or 0, now - 3)
        intent.notes.append("'recent' read as released in the last 3 years")

    def classic(m: re.Match[str]) -> None:
        intent.year_max = min(intent.year_max or now, now - 20)
        intent.notes.append("'classic' read as released 20 or more years ago")

    cut(r"\b(recent|new|newer|latest|this year's)\b(?!\s+(?:york|world))", recent)
    cut(r"\b(classic|old|oldies|vintage)\b", classic)
    return norm


def _check(intent: Intent) -> None:
    contradictory = sorted(set(intent.genres_any) & set(intent.unwanted))
    if contradictory:
        intent.answerable = False
        intent.reason = f"asks for and against {', '.join(contradictory)}"
    elif (
        intent.runtime_min_s is not None
        and intent.runtime_max_s is not None
        and intent.runtime_min_s > intent.runtime_max_s
    ):
        intent.answerable, intent.reason = False, "runtime bounds contradict each other"
    elif (
        intent.year_min is not None
        and intent.year_max is not None
        and intent.year_min > intent.year_max
    ):
        intent.answerable, intent.reason = False, "year bounds contradict each other"
    elif not (intent.has_hard or intent.wanted or intent.similar_to or intent.mood):
        intent.answerable = False
        intent.reason = "nothing in the request names a genre, tag, mood, runtime, year, " + (
            "audience or title this catalog knows"
        )
    wanted_unwanted = set(intent.wanted) & set(intent.unwanted)
    if wanted_unwanted:
        intent.wanted = [k for k in intent.wanted if k not in wanted_unwanted]
