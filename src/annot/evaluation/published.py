"""Published Corel-5k / ESP-Game / IAPRTC-12 numbers (P, R, F1, N+), for putting our runs beside them.

From Murthy, Maji & Manmatha, ICMR 2015, Table 1 (VGG-16 features for the CCA rows). Keyed by the name of the
dataset folder, which the run's dataset path contains.
"""

from __future__ import annotations

PUBLISHED: dict[str, dict[str, tuple[float, float, float, int]]] = {
    "corel5k": {
        "JEC (handcrafted)": (27, 32, 29, 139),
        "MBRM (handcrafted)": (24, 25, 25, 122),
        "TagProp σML (handcrafted)": (33, 42, 37, 160),
        "2PKNN (handcrafted)": (39, 40, 39.5, 177),
        "2PKNN+ML (handcrafted)": (44, 46, 45, 191),
        "SVM-DMBRM (handcrafted)": (36, 48, 41, 197),
        "JEC (VGG-16)": (31, 32, 32, 141),
        "SVM-DMBRM (VGG-16)": (42, 45, 43, 186),
        "2PKNN (VGG-16)": (33, 30, 32, 160),
        "CCA (VGG-16, W2V)": (35, 46, 40, 172),
        "KCCA (VGG-16, W2V)": (39, 53, 45, 184),
        "CCA-KNN (VGG-16, BV)": (39, 51, 44, 192),
        "CCA-KNN (VGG-16, W2V)": (42, 52, 46, 201),
        "CNN-R (CaffeNet, W2V)": (32, 41.3, 37.2, 166),
    },
    "espgame": {
        "CCA (VGG-16, W2V)": (29, 32, 30, 250),
        "KCCA (VGG-16, W2V)": (30, 36, 33, 252),
        "CCA-KNN (VGG-16, W2V)": (46, 36, 41, 260),
    },
    "iaprtc12": {
        "CCA (VGG-16, W2V)": (33, 32, 33, 268),
        "KCCA (VGG-16, W2V)": (38, 39, 38, 273),
        "CCA-KNN (VGG-16, W2V)": (45, 38, 41, 278),
    },
}


def published_for(dataset_path: str) -> tuple[str, dict[str, tuple[float, float, float, int]]]:
    """The published rows for the dataset a run's path names, or an empty table."""
    for name, rows in PUBLISHED.items():
        if name in dataset_path.lower():
            return name, rows
    return "", {}
