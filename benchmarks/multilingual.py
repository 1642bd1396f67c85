"""Search in other languages: precision@10 of 40 Corel-5k words, each in German, French and Spanish, against the
same words in English, over the 499 test images annotated into the library (`benchmarks/library.py`'s copy).

A photo counts as right when its test tags hold the English word. Each query is searched the default way
(combined, ended by the calibrated cut: precision of the list as returned and how many it returned) and with every
match (``--all``: precision@10 of the ranking); ``read_right`` is the share of the foreign words whose first reading
(``read_as``) is the English word.

``--choose`` instead prints what the settings of `annot.features.multilingual` were chosen by: a separate list of
26 words in the three languages (``DEV``), how often the nearest vocabulary word is right, and at each cut how many
words are placed and how many of those rightly. The benchmark's words are not used for that.

    python benchmarks/multilingual.py [--store out/corel5k.annot] [--data ../shared/data/corel5k] [--choose]

Writes benchmarks/results/multilingual.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np

import annot
from annot.features import multilingual
from common import write_results
from library import library_store, test_truth

LANGUAGES = ("de", "fr", "es")
# English (a Corel-5k word) -> German, French, Spanish
WORDS = {
    "sky": ("Himmel", "ciel", "cielo"), "sun": ("Sonne", "soleil", "sol"), "water": ("Wasser", "eau", "agua"),
    "tree": ("Baum", "arbre", "árbol"), "lake": ("See", "lac", "lago"), "sea": ("Meer", "mer", "mar"),
    "beach": ("Strand", "plage", "playa"), "boats": ("Boote", "bateaux", "barcos"),
    "people": ("Menschen", "gens", "gente"), "mountain": ("Berg", "montagne", "montaña"),
    "snow": ("Schnee", "neige", "nieve"), "flowers": ("Blumen", "fleurs", "flores"), "cat": ("Katze", "chat", "gato"),
    "tiger": ("Tiger", "tigre", "tigre"), "bear": ("Bär", "ours", "oso"), "horses": ("Pferde", "chevaux", "caballos"),
    "bridge": ("Brücke", "pont", "puente"), "house": ("Haus", "maison", "casa"),
    "church": ("Kirche", "église", "iglesia"), "forest": ("Wald", "forêt", "bosque"),
    "river": ("Fluss", "rivière", "río"), "birds": ("Vögel", "oiseaux", "pájaros"),
    "street": ("Straße", "rue", "calle"), "garden": ("Garten", "jardin", "jardín"),
    "castle": ("Burg", "château", "castillo"), "train": ("Zug", "train", "tren"),
    "cars": ("Autos", "voitures", "coches"), "fish": ("Fisch", "poisson", "pez"),
    "elephant": ("Elefant", "éléphant", "elefante"), "desert": ("Wüste", "désert", "desierto"),
    "night": ("Nacht", "nuit", "noche"), "grass": ("Gras", "herbe", "hierba"), "rocks": ("Felsen", "rochers", "rocas"),
    "clouds": ("Wolken", "nuages", "nubes"), "sand": ("Sand", "sable", "arena"),
    "window": ("Fenster", "fenêtre", "ventana"), "door": ("Tür", "porte", "puerta"),
    "sheep": ("Schafe", "moutons", "ovejas"), "deer": ("Hirsch", "cerf", "ciervo"), "ice": ("Eis", "glace", "hielo"),
}
# the words the settings were chosen on (none of them above)
DEV = {
    "city": ("Stadt", "ville", "ciudad"), "leaf": ("Blatt", "feuille", "hoja"), "island": ("Insel", "île", "isla"),
    "ships": ("Schiffe", "navires", "barcos"), "fence": ("Zaun", "clôture", "valla"),
    "plane": ("Flugzeug", "avion", "avión"), "flag": ("Flagge", "drapeau", "bandera"),
    "smoke": ("Rauch", "fumée", "humo"), "fox": ("Fuchs", "renard", "zorro"), "wall": ("Mauer", "mur", "pared"),
    "stone": ("Stein", "pierre", "piedra"), "valley": ("Tal", "vallée", "valle"),
    "temple": ("Tempel", "temple", "templo"), "market": ("Markt", "marché", "mercado"),
    "lion": ("Löwe", "lion", "león"), "cave": ("Höhle", "grotte", "cueva"), "food": ("Essen", "nourriture", "comida"),
    "fruit": ("Obst", "fruit", "fruta"), "cow": ("Kuh", "vache", "vaca"), "tower": ("Turm", "tour", "torre"),
    "snake": ("Schlange", "serpent", "serpiente"), "goat": ("Ziege", "chèvre", "cabra"),
    "whales": ("Wale", "baleines", "ballenas"), "woman": ("Frau", "femme", "mujer"),
    "man": ("Mann", "homme", "hombre"), "girl": ("Mädchen", "fille", "niña"),
}


def choose(vocabulary: list[str]) -> dict[str, object]:
    """The nearest-word accuracy on ``DEV`` and, at each cut, the share of words placed and placed rightly."""
    meanings = multilingual.Meanings(vocabulary)
    pairs = [(word, english) for english, words in DEV.items() for word in words]
    best = []
    for word, english in pairs:
        similarity = meanings.similarity(word)
        best.append((float(similarity.max()), vocabulary[int(similarity.argmax())] == english))
    right = np.array([r for _, r in best])
    top = np.array([s for s, _ in best])
    cuts = {}
    for cut in (0.0, 0.3, 0.35, 0.4, 0.45, 0.5):
        kept = top >= cut
        cuts[str(cut)] = {"placed": round(float(kept.mean()), 3),
                          "right_of_placed": round(float(right[kept].mean()), 3) if kept.any() else None}
    out = {"words": len(pairs), "nearest_right": round(float(right.mean()), 3), "cuts": cuts}
    print(json.dumps(out), flush=True)
    return out


def measure(store: Path, data: Path) -> dict[str, object]:
    copy = library_store(store, data, "bench-library.annot")
    truth = test_truth(data)
    api = annot.open_store(copy)
    api.find(["Katze"], scope="library")  # the vocabulary's embeddings made (cached) before timing
    per_language: dict[str, dict[str, object]] = {}
    for n, language in enumerate(("en", *LANGUAGES)):
        at_10, listed, returned, right_reading, times = [], [], [], [], []
        for english, words in WORDS.items():
            query = english if language == "en" else words[n - 1]
            started = time.perf_counter()
            found = api.find([query], scope="library", n=10)
            times.append(time.perf_counter() - started)
            listed.append(np.mean([english in truth.get(h.path, set()) for h in found.hits]) if found.hits else 0.0)
            returned.append(len(found.hits))
            ranked = api.find([query], scope="library", n=10, all_results=True).hits
            at_10.append(sum(english in truth.get(h.path, set()) for h in ranked) / 10)
            reading = found.read_as.get(found.words[0], [found.words[0]]) if found.words else []
            right_reading.append(bool(reading) and reading[0] == english)
        per_language[language] = {"p_at_10_all": round(100 * float(np.mean(at_10)), 1),
                                  "list_precision": round(100 * float(np.mean(listed)), 1),
                                  "mean_returned": round(float(np.mean(returned)), 1),
                                  "read_right": round(100 * float(np.mean(right_reading)), 1),
                                  "median_ms": round(1000 * statistics.median(times), 1)}
        print(language, per_language[language], flush=True)
    api.close()
    return {"words": len(WORDS), "photos": len(truth), "languages": per_language}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", type=Path, default=Path("out/corel5k.annot"))
    parser.add_argument("--data", type=Path, default=Path("../shared/data/corel5k"))
    parser.add_argument("--choose", action="store_true", help="print the settings' choice on the DEV words only")
    args = parser.parse_args()
    if args.choose:
        choose(annot.open_store(args.store).model().vocabulary)
        return
    results = measure(args.store, args.data)
    rows = [f"| {language} | {r['p_at_10_all']} | {r['list_precision']} | {r['mean_returned']} | {r['read_right']} |"
            for language, r in results["languages"].items()]  # type: ignore[attr-defined]
    write_results("multilingual", results, ["language", "P@10 (all matches)", "precision of the list",
                                            "photos listed", "read as the English word (%)"], rows)


if __name__ == "__main__":
    main()
