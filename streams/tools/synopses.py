"""Synopses for the synthetic catalog whose words carry its tags without naming them.

Each tag value has a bank of paraphrases (a ``horror`` title is "a house that
will not let its guests leave", never "a horror film"), so a tagger that only
looks for tag names finds little and one that understands the words can recover
the tags. A synopsis mentions every genre and each other dimension with a
probability (``MENTION_P``): some tags are simply not in the text, as in real
catalogs, and recall below 1 is expected.

Everything here draws from its own ``random.Random``, never the simulation's,
so adding synopses does not change the simulated events (the same seed still
gives byte-identical traffic; tests/unit/test_synopses.py checks a digest).

>>> import random
>>> text = synopsis({"genre": ["horror"], "tone": ["dark"]}, random.Random(1))
>>> "horror" in text.lower() or "dark" in text.lower().split()
False
"""

from __future__ import annotations

import random

MENTION_P = 0.85  # chance that a non-genre dimension is written into the synopsis

PHRASES: dict[str, dict[str, list[str]]] = {
    "genre": {
        "drama": [
            "a family torn apart by a choice nobody can undo",
            "ordinary people pushed to their breaking point",
            "a raw portrait of lives at a crossroads",
            "quiet heartbreak and hard decisions",
        ],
        "comedy": [
            "a string of hilarious mishaps",
            "laugh-out-loud blunders and absurd misunderstandings",
            "a hapless hero who makes everything funnier and worse",
            "jokes, pratfalls and one very awkward wedding",
        ],
        "thriller": [
            "a race against the clock to stop a deadly plot",
            "a cat-and-mouse chase where one wrong move is fatal",
            "a conspiracy that reaches the highest offices",
            "an escape with killers one step behind",
        ],
        "scifi": [
            "a future where machines decide who lives",
            "an experiment that bends time itself",
            "androids, starships and an alien signal",
            "a scientist whose invention rewrites reality",
        ],
        "documentary": [
            "real footage and interviews with the people who were there",
            "a filmed investigation of true events",
            "archival reels and first-hand testimony",
            "the true story told by its witnesses",
        ],
        "animation": [
            "hand-drawn characters in a colourful cartoon world",
            "a talking fox and its animated friends",
            "brightly drawn creatures voiced by a lively cast",
            "a stop-motion puppet adventure",
        ],
        "romance": [
            "two strangers who fall for each other against the odds",
            "a love affair that changes both their lives",
            "a first kiss, a missed train and a second chance at the heart's desire",
            "a courtship neither of them planned",
        ],
        "horror": [
            "a house that will not let its guests leave",
            "something terrible crawling out of the cellar",
            "a haunting that grows bloodier every night",
            "a demon that feeds on fear",
        ],
        "crime": [
            "a heist planned by a crew of career thieves",
            "detectives chasing a killer through the precinct files",
            "a mob boss, a bent cop and a stolen fortune",
            "gangsters, robberies and the police closing in",
        ],
        "fantasy": [
            "wizards, dragons and an ancient spell",
            "a sorceress who must find an enchanted sword",
            "elves and trolls in a war of magic",
            "a prophecy, a curse and a quest for a magical crown",
        ],
    },
    "tone": {
        "dark": [
            "Bleak and unforgiving.",
            "Grim, shadowed and without easy comfort.",
            "A sombre, despairing look at what people do.",
        ],
        "light": [
            "Breezy and easygoing.",
            "Cheerful, carefree fun.",
            "A sunny, feel-good watch.",
        ],
        "quirky": [
            "Offbeat and eccentric.",
            "Wonderfully odd, full of oddball characters.",
            "Whimsical and a little weird.",
        ],
        "gritty": [
            "Raw, harsh and street-level.",
            "Unvarnished and rough around every edge.",
            "Dirty streets and hard knocks, shown without polish.",
        ],
        "heartwarming": [
            "Tender and uplifting.",
            "A touching story that will leave you smiling through tears.",
            "Sweet, moving and full of kindness.",
        ],
        "suspenseful": [
            "Nail-biting tension from start to finish.",
            "Edge-of-your-seat and tense.",
            "Every scene tightens the knot of dread.",
        ],
    },
    "pacing": {
        "slow": [
            "It unfolds patiently, with long unhurried scenes.",
            "A leisurely, contemplative burn.",
            "Meditative and gradual.",
        ],
        "medium": [
            "Steadily paced.",
            "It moves at an even, measured rhythm.",
            "Balanced in rhythm, neither rushed nor lingering.",
        ],
        "fast": [
            "Relentless and breakneck.",
            "It races from one set piece to the next.",
            "Rapid-fire, frantic and non-stop.",
        ],
    },
    "narrative": {
        "linear": [
            "Told straight through from beginning to end.",
            "A chronological telling.",
            "The story runs in order, day after day.",
        ],
        "nonlinear": [
            "Told in flashbacks and shuffled timelines.",
            "The chronology is fractured, jumping back and forth in time.",
            "Past and present intercut out of order.",
        ],
        "anthology": [
            "A collection of separate tales.",
            "Self-contained stories, each with new characters.",
            "Several standalone episodes linked only by a place.",
        ],
        "ensemble": [
            "A large cast shares the spotlight.",
            "Many intertwined characters, no single lead.",
            "A sprawling group of equals carries the story.",
        ],
        "character-driven": [
            "An intimate study of one person's inner life.",
            "Everything rests on a single, complex protagonist.",
            "A close portrait of one mind.",
        ],
    },
    "theme": {
        "family": [
            "parents, siblings and the ties of kin",
            "a household that must learn to stay together",
            "a mother, her children and the home they share",
        ],
        "revenge": [
            "a vendetta against the men who wronged them",
            "settling an old score at any cost",
            "payback for a betrayal years ago",
        ],
        "coming-of-age": [
            "a teenager growing up over one unforgettable summer",
            "the awkward passage from childhood to adulthood",
            "adolescence, first jobs and leaving home",
        ],
        "survival": [
            "staying alive against hunger, cold and the wild",
            "stranded with dwindling supplies and no rescue",
            "enduring a disaster when help will not come",
        ],
        "friendship": [
            "loyal companions who stick together",
            "pals who would do anything for each other",
            "an unlikely bond between two buddies",
        ],
        "power": [
            "a ruthless struggle for control of the throne",
            "ambition, politics and who gets to rule",
            "a dynasty fighting over an empire of influence",
        ],
        "love": [
            "devotion that outlasts every obstacle",
            "longing, passion and a promise kept",
            "two hearts drawn together",
        ],
        "mystery": [
            "a puzzling disappearance nobody can explain",
            "clues, secrets and a riddle to solve",
            "an unsolved enigma buried for decades",
        ],
        "identity": [
            "figuring out who they really are",
            "a double life and a hidden self",
            "a search for belonging and a true name",
        ],
        "justice": [
            "a fight to right a wrongful conviction",
            "lawyers, a courtroom and the truth on trial",
            "holding the guilty to account",
        ],
    },
    "setting": {
        "urban": [
            "Set among the skyscrapers and subways of a big city.",
            "On crowded downtown streets.",
            "In a sprawling metropolis that never sleeps.",
        ],
        "rural": [
            "Set on a remote farm far from any town.",
            "In a sleepy countryside village.",
            "Among fields, barns and empty country roads.",
        ],
        "space": [
            "Aboard a starship drifting between planets.",
            "On a station orbiting a distant moon.",
            "Among the stars, light-years from Earth.",
        ],
        "historical": [
            "Set in the nineteenth century.",
            "In a bygone era of kings and horse-drawn carriages.",
            "Against the backdrop of a war long past.",
        ],
        "fantasy-world": [
            "In an imaginary realm with kingdoms of its own.",
            "Across a mythical land of castles and enchanted forests.",
            "In an invented world beyond any map.",
        ],
        "workplace": [
            "Set in a busy office.",
            "Among colleagues at a hospital ward and its night shifts.",
            "Behind the counter of a restaurant kitchen and its staff.",
        ],
    },
    "audience": {
        "kids": [
            "Made for young children.",
            "Perfect for little ones.",
            "A gentle story for kindergarteners and early readers.",
        ],
        "family": [
            "Fun for all ages.",
            "Something parents and children can enjoy together.",
            "A pick for the whole household on movie night.",
        ],
        "teen": [
            "Aimed at high schoolers.",
            "For adolescent viewers.",
            "Made with young adult viewers in mind.",
        ],
        "adult": [
            "For mature viewers only.",
            "Strong violence and language: grown-ups only.",
            "Intended for a mature, grown-up crowd.",
        ],
    },
}
AUDIENCES = list(PHRASES["audience"])


def audience_for(genres: list[str], rng: random.Random) -> str:
    """A plausible audience for a title of these genres (horror never for kids)."""
    if "horror" in genres:
        return "adult"
    if "animation" in genres:
        return rng.choices(AUDIENCES, weights=[0.5, 0.4, 0.1, 0.0])[0]
    if "crime" in genres or "thriller" in genres:
        return rng.choices(AUDIENCES, weights=[0.0, 0.05, 0.25, 0.7])[0]
    return rng.choices(AUDIENCES, weights=[0.05, 0.25, 0.25, 0.45])[0]


def synopsis(tags: dict[str, list[str]], rng: random.Random, phrasing: int | None = None) -> str:
    """A synopsis for ``tags`` (dimension -> values; genres under ``genre``).

    ``phrasing`` 0 or 1 draws only from the even or odd paraphrases of each bank, so an
    evaluation can train on one half and test on wordings it never saw
    (``reelstream tags eval --unseen-phrasing``).
    """

    def pick(dim: str, value: str) -> str:
        bank = PHRASES[dim][value]
        if phrasing is not None:
            bank = bank[phrasing::2]
        return rng.choice(bank)

    genre = [pick("genre", g) for g in tags.get("genre", [])]
    theme = [pick("theme", t) for t in tags.get("theme", [])]
    lead = "A story of " + " and ".join(genre) if genre else "A story"
    if theme and rng.random() < MENTION_P:
        lead += ", about " + " and ".join(theme)
    sentences = [lead + "."]
    for dim in ("tone", "pacing", "narrative", "setting", "audience"):
        for value in tags.get(dim, []):
            if rng.random() < MENTION_P:
                sentences.append(pick(dim, value))
    head, rest = sentences[0], sentences[1:]
    rng.shuffle(rest)
    return " ".join([head, *rest])


def side_rng(seed: int, key: str) -> random.Random:
    """A generator of its own for one catalog entry (string seeds are stable across runs)."""
    return random.Random(f"synopsis:{seed}:{key}")
