"""The public Python API: one object you open, whose methods are what the commands do.

```python
import annot

store = annot.open_store("corel5k.annot")
store.build("train.jsonl", annot.BuildSettings(text=annot.TextSettings(vocabulary=Path("vocabulary.txt"))))
for a in store.query(["photo.jpg"]):
    print(a.image, [(t.tag, round(t.score, 3), t.confidence) for t in a.tags])
print(store.evaluate("test.jsonl").summary.f1)
store.annotate(["~/Pictures"])                      # the photo library: kept, incremental
print([hit.path for hit in store.search(["beach"])])
```

The command line (``annot.cli``) and the server (``annot.serve``) call these same methods.
"""

from annot.api.reading import StoreInfo
from annot.api.store import WRITE_WAIT, Store, open_store

__all__ = ["WRITE_WAIT", "Store", "StoreInfo", "open_store"]
