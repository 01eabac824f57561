"""Plain-language watchlist requests with the constraints a reader expects from each.

Each entry is (request, expected): every key of ``expected`` must match the parse
(lists compare as sets; ``wanted`` lists soft tags that must be among those read;
``similar`` is the name of the title the request refers to). Shared by the parser
tests and the ranking tests (tests/unit/test_watchlist.py) and the latency
benchmark (streams/tools/bench_query.py).
"""

NOW_YEAR = 2026
TITLES = [  # (title_id, name, runtime_s, year) known to the parser in the parse tests
    ("t00001", "Night River", 6000, 2010),
    ("t00002", "Shadow Storm", 5400, 2020),
    ("t00003", "Glass Empire", 8400, 1999),
]

QUERIES: list[tuple[str, dict]] = [
    # the examples
    (
        "a light-paced mystery comedy for a relaxing weekend",
        {
            "genres_any": ["genre:comedy"],
            "wanted": ["tone:light", "theme:mystery"],
            "mood": ["relaxing"],
        },
    ),
    ("something like Night River but shorter", {"similar": "Night River", "runtime_max_s": 5940}),
    (
        "no horror, under 2 hours, for the kids",
        {"unwanted": ["genre:horror"], "runtime_max_s": 7200, "audience": ["kids", "family"]},
    ),
    (
        "documentaries about space from the last five years",
        {"genres_any": ["genre:documentary"], "wanted": ["setting:space"], "year_min": 2021},
    ),
    # genres, plural, adjectives
    ("a funny movie", {"genres_any": ["genre:comedy"], "kind": "movie"}),
    (
        "scary films from the 90s",
        {"genres_any": ["genre:horror"], "kind": "movie", "year_min": 1990, "year_max": 1999},
    ),
    ("sci-fi set in outer space", {"genres_any": ["genre:scifi"], "wanted": ["setting:space"]}),
    ("science fiction series", {"genres_any": ["genre:scifi"], "kind": "episode"}),
    ("a romantic comedy", {"genres_any": ["genre:romance", "genre:comedy"]}),
    ("a rom-com for date night", {"genres_any": ["genre:romance", "genre:comedy"]}),
    (
        "animated films for the whole family",
        {"genres_any": ["genre:animation"], "kind": "movie", "audience": ["kids", "family"]},
    ),
    (
        "cartoons for little ones",
        {"genres_any": ["genre:animation"], "audience": ["kids", "family"]},
    ),
    ("a heist thriller", {"genres_any": ["genre:crime", "genre:thriller"]}),
    ("crime dramas", {"genres_any": ["genre:crime", "genre:drama"]}),
    ("fantasy with dragons and wizards", {"genres_any": ["genre:fantasy"]}),
    (
        "a gritty detective series set in the city",
        {
            "genres_any": ["genre:crime"],
            "kind": "episode",
            "wanted": ["tone:gritty", "setting:urban"],
        },
    ),
    # negation
    ("anything but horror", {"unwanted": ["genre:horror"]}),
    ("a comedy, nothing too dark", {"genres_any": ["genre:comedy"], "unwanted": ["tone:dark"]}),
    ("no romance and no horror please", {"unwanted": ["genre:romance", "genre:horror"]}),
    ("a thriller without gore", {"genres_any": ["genre:thriller"], "unwanted": ["genre:horror"]}),
    ("something that isn't scary", {"unwanted": ["genre:horror"]}),
    ("a drama but not slow", {"genres_any": ["genre:drama"], "unwanted": ["pacing:slow"]}),
    (
        "not a documentary, a fast-paced thriller",
        {
            "genres_any": ["genre:thriller"],
            "unwanted": ["genre:documentary"],
            "wanted": ["pacing:fast"],
        },
    ),
    ("avoid anything bleak or gritty", {"unwanted": ["tone:dark", "tone:gritty"]}),
    ("no series, just a film", {"kind": "movie"}),
    ("comedy except romance", {"genres_any": ["genre:comedy"], "unwanted": ["genre:romance"]}),
    # runtime
    ("a comedy under 90 minutes", {"genres_any": ["genre:comedy"], "runtime_max_s": 5400}),
    ("something over 2 hours", {"runtime_min_s": 7200}),
    ("a short documentary", {"genres_any": ["genre:documentary"], "runtime_max_s": 5400}),
    ("a long epic fantasy", {"genres_any": ["genre:fantasy"], "runtime_min_s": 7200}),
    ("a thriller less than an hour", {"genres_any": ["genre:thriller"], "runtime_max_s": 3600}),
    ("at least 100 minutes of drama", {"genres_any": ["genre:drama"], "runtime_min_s": 6000}),
    ("crime, max 1.5 hours", {"genres_any": ["genre:crime"], "runtime_max_s": 5400}),
    (
        "a horror film shorter than 100 mins",
        {"genres_any": ["genre:horror"], "runtime_max_s": 6000, "kind": "movie"},
    ),
    # years
    ("recent sci-fi", {"genres_any": ["genre:scifi"], "year_min": 2023}),
    ("classic crime films", {"genres_any": ["genre:crime"], "year_max": 2006, "kind": "movie"}),
    ("a drama from 2019", {"genres_any": ["genre:drama"], "year_min": 2019, "year_max": 2019}),
    ("comedies released after 2015", {"genres_any": ["genre:comedy"], "year_min": 2016}),
    ("thrillers before 2000", {"genres_any": ["genre:thriller"], "year_max": 1999}),
    (
        "romance between 2005 and 2010",
        {"genres_any": ["genre:romance"], "year_min": 2005, "year_max": 2010},
    ),
    ("horror from the 1980s", {"genres_any": ["genre:horror"], "year_min": 1980, "year_max": 1989}),
    ("documentaries from the past decade", {"genres_any": ["genre:documentary"], "year_min": 2016}),
    ("animation since 2020", {"genres_any": ["genre:animation"], "year_min": 2020}),
    # audience
    ("something for teens", {"audience": ["teen", "family", "kids"]}),
    ("a thriller for adults", {"genres_any": ["genre:thriller"], "audience": ["adult"]}),
    ("family-friendly comedies", {"genres_any": ["genre:comedy"], "audience": ["kids", "family"]}),
    ("a movie the children can watch", {"kind": "movie", "audience": ["kids", "family"]}),
    # moods and soft tags
    ("something cozy", {"mood": ["cozy"], "wanted": ["tone:heartwarming"]}),
    ("i need something uplifting", {"wanted": ["tone:heartwarming"]}),
    (
        "a tense, gripping thriller",
        {"genres_any": ["genre:thriller"], "wanted": ["tone:suspenseful"]},
    ),
    (
        "a quirky comedy about friendship",
        {"genres_any": ["genre:comedy"], "wanted": ["tone:quirky", "theme:friendship"]},
    ),
    (
        "a slow burn drama about revenge",
        {"genres_any": ["genre:drama"], "wanted": ["pacing:slow", "theme:revenge"]},
    ),
    ("a coming of age story set on a farm", {"wanted": ["theme:coming-of-age", "setting:rural"]}),
    ("an anthology of horror", {"genres_any": ["genre:horror"], "wanted": ["narrative:anthology"]}),
    (
        "a historical drama about power",
        {"genres_any": ["genre:drama"], "wanted": ["setting:historical", "theme:power"]},
    ),
    ("something thrilling for tonight", {"mood": ["thrilling"], "wanted": ["pacing:fast"]}),
    # similar to
    ("more like Shadow Storm", {"similar": "Shadow Storm"}),
    ("similar to glass empire but newer", {"similar": "Glass Empire", "year_min": 2000}),
    ("something like nigth rivr", {"similar": "Night River"}),
    (
        "like Glass Empire but shorter, no horror",
        {"similar": "Glass Empire", "runtime_max_s": 8340, "unwanted": ["genre:horror"]},
    ),
    # misspellings
    (
        "a horor movie",
        {"genres_any": ["genre:horror"], "kind": "movie", "corrections": {"horor": "horror"}},
    ),
    (
        "documentarys about survival",
        {"genres_any": ["genre:documentary"], "wanted": ["theme:survival"]},
    ),
    ("a comdy for the kidss", {"genres_any": ["genre:comedy"]}),
    ("thriler under 2 hours", {"genres_any": ["genre:thriller"], "runtime_max_s": 7200}),
    ("animaton for children", {"genres_any": ["genre:animation"], "audience": ["kids", "family"]}),
    ("romantik comedy", {"genres_any": ["genre:romance", "genre:comedy"]}),
    # unanswerable
    ("what is the weather in Paris", {"answerable": False}),
    ("book me a table for two", {"answerable": False}),
    ("", {"answerable": False}),
    ("a comedy but no comedy", {"answerable": False}),
    ("over 3 hours and under 1 hour", {"answerable": False}),
    ("asdf qwerty zxcv", {"answerable": False}),
]
