"""The API's routers, one per resource; :func:`annot.serve.app.create_app` includes them all under ``/v1``."""

from annot.serve.routes import annotate, corrections, health, images, photos, review, runs, search, tags

ROUTERS = [health.router, annotate.router, search.router, images.router, tags.router, corrections.router,
           runs.router, review.router, photos.router]

__all__ = ["ROUTERS"]
