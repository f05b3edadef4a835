"""The seed basket: several liked and disliked songs, and "More like this" / "Less like this" on the
cards, re-ranking exactly as the library ranks the same seeds."""

from __future__ import annotations

from tests.ui.apptest import card_titles, cards, messages, pick_by_title, shown, use
from tests.ui.oracle import expected_titles, point_ids
from ui.basket import Basket, because
from ui.views import safe_text

SEA0, SEA2, CITY1 = "Sea Song 0 — Sea Band 0", "Sea Song 2 — Sea Band 0", "City Song 1 — City Band 1"


def test_a_seed_added_again_keeps_its_place_and_takes_the_new_verdict():
    basket = Basket({})
    basket.add("a", "A")
    basket.add("b", "B", liked=False)
    basket.add("a", "A", liked=False)
    assert [(s.point_id, s.liked) for s in basket.seeds] == [("a", False), ("b", False)]
    basket.flip("b")
    basket.add("c", "C")
    assert [s.point_id for s in basket.liked] == ["b", "c"] and [s.point_id for s in basket.disliked] == ["a"]
    basket.remove("b")
    assert [s.point_id for s in basket.seeds] == ["a", "c"]
    basket.clear()
    assert basket.seeds == []


def test_the_heading_names_a_few_seeds_and_counts_the_rest():
    basket = Basket({})
    for name in "ABCDE":
        basket.add(name, f"Song {name}")
    assert because(basket) == "Because you like Song A, Song B, Song C and 2 more"
    basket.flip("E")
    basket.flip("D")
    assert because(basket) == "Because you like Song A, Song B and Song C, and not Song D and Song E"
    basket.add("x", "[x](https://evil)", liked=False)
    assert because(basket).endswith("and not Song D, Song E and [x](https://evil)")  # plain, for files
    assert because(basket, safe_text).endswith(f"and not Song D, Song E and {safe_text('[x](https://evil)')}")


def test_more_and_less_like_this_rerank_exactly(monkeypatch, catalogue_settings, app):
    settings = catalogue_settings
    ids = point_ids(settings)
    alone = expected_titles(settings, ["Sea Song 0"])
    with_city = expected_titles(settings, ["Sea Song 0", "City Song 1"])
    without_sea2 = expected_titles(settings, ["Sea Song 0", "City Song 1"], ["Sea Song 2"])
    by_cover = expected_titles(settings, ["Sea Song 0", "City Song 1"], ["Sea Song 2"], lyrics_weight=0.0)
    flipped = expected_titles(settings, ["Sea Song 0", "City Song 1", "Sea Song 2"], lyrics_weight=0.0)
    removed = expected_titles(settings, ["Sea Song 0", "Sea Song 2"], lyrics_weight=0.0)
    # Liking a city song moves the other city songs up among those still shown: the order changes.
    assert [t for t in alone if t in with_city] != with_city
    assert [t for t in with_city if t in without_sea2] != without_sea2  # and disliking a sea song does too
    use(monkeypatch, settings)
    app.run()

    pick_by_title(app, "Sea Song 0", "Sea Song 0")
    assert [shown(t) for t in card_titles(app)] == alone
    app.button(key=f"more-{ids['City Song 1']}").click().run()
    assert [shown(t) for t in card_titles(app)] == with_city
    app.button(key=f"less-{ids['Sea Song 2']}").click().run()
    assert [shown(t) for t in card_titles(app)] == without_sea2
    assert f"#### Because you like {SEA0} and {CITY1}, and not {SEA2}" in [shown(m.value) for m in app.markdown]
    assert "Your seeds: 2 liked, 1 disliked" in [e.label for e in app.expander]

    app.slider(key="lyrics_weight").set_value(0.0).run()  # any rerun keeps the basket
    assert [shown(t) for t in card_titles(app)] == by_cover
    app.button(key=f"flip-{ids['Sea Song 2']}").click().run()
    assert [shown(t) for t in card_titles(app)] == flipped
    app.button(key=f"remove-{ids['City Song 1']}").click().run()
    assert [shown(t) for t in card_titles(app)] == removed
    app.button(key="basket-clear").click().run()
    assert not cards(app) and not app.expander
    assert any("Search for a song" in c.value for c in app.caption)


def test_dislikes_alone_ask_for_a_liked_song(monkeypatch, catalogue_settings, app):
    ids = point_ids(catalogue_settings)
    use(monkeypatch, catalogue_settings)
    app.run()
    pick_by_title(app, "Sea Song 0", "Sea Song 0")
    app.button(key=f"less-{ids['City Song 1']}").click().run()
    app.button(key=f"flip-{ids['Sea Song 0']}").click().run()
    assert not app.exception and not cards(app)
    assert any("Like at least one song" in m for m in messages(app))


def test_a_theme_then_more_like_this_starts_a_basket(monkeypatch, catalogue_settings, app):
    ids = point_ids(catalogue_settings)
    expected = expected_titles(catalogue_settings, ["City Song 2"])
    use(monkeypatch, catalogue_settings)
    app.run()
    app.text_input(key="theme").input("skyscrapers and traffic downtown").run()
    app.button(key="theme-go").click().run()
    assert any(m.value.startswith("#### Songs whose lyrics match: skyscrapers") for m in app.markdown)
    app.button(key=f"more-{ids['City Song 2']}").click().run()
    assert [shown(t) for t in card_titles(app)] == expected
    assert "#### Because you like City Song 2 — City Band 0" in [shown(m.value) for m in app.markdown]


def test_likes_and_dislikes_that_cancel_out_are_a_message(monkeypatch, tmp_path, write_catalogue, app):
    from ingest.context import open_songspace
    from ingest.pipeline import Ingestor
    from tests.conftest import SEA_LYRICS, make_cover, store_settings

    settings = store_settings("edge", tmp_path)
    (tmp_path / "same.png").write_bytes(make_cover((20, 60, 200), 1))
    rows = [
        {"id": f"twin-{i}", "title": f"Twin {i}", "artist": f"Band {i}", "lyrics": SEA_LYRICS[0], "cover_path": "same.png"}
        for i in range(2)
    ] + [{"id": "other", "title": "Other", "artist": "Band 2", "lyrics": SEA_LYRICS[1], "cover_path": "same.png"}]
    songspace = open_songspace(settings)
    Ingestor(songspace.index, songspace.embedder, songspace.fetcher, progress=False).run(write_catalogue(rows))
    songspace.close()
    ids = point_ids(settings)
    use(monkeypatch, settings)
    app.run()
    pick_by_title(app, "twin 0", "Twin 0")
    app.button(key=f"less-{ids['Twin 1']}").click().run()
    assert not app.exception and not cards(app)
    # The library says why; the page adds what to do.
    assert any(w.startswith("the liked and disliked songs cancel out") and w.endswith(": change a like or a dislike.")
               for w in messages(app)), messages(app)
